"""Offline reproducibility evaluation: replica pairs per variant, PD, swap rate, accuracy, cost.

For each variant (an activation, a SmeLU beta, or an ensemble size) and each pair index p,
replicas A and B are trained with seeds 2p+1 and 2p+2 (same data, same config), exported,
loaded back, and compared on the eval split. Exports are cached in a work folder and reused
when their manifest matches (config, seed, data checksum, split), so an interrupted
comparison picks up where it stopped.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from steadyrank.model import metrics
from steadyrank.model.config import ACTIVATIONS, Config, validate
from steadyrank.model.evaluate import accuracy
from steadyrank.model.export import ExportError, LoadedModel, load
from steadyrank.model.train import Log, Splits, prepare_data, say
from steadyrank.model.workflow import train_and_export

VARIANT_RE = re.compile(r"^(?P<act>[a-z]+)(?P<ens>-ensemble)?(?::(?P<arg>[0-9.]+))?$")
SWAP_KS = (1, 5, 10)


@dataclass(frozen=True)
class Variant:
    """A change to the base config: activation, SmeLU beta, ensemble size."""

    name: str
    activation: str
    smelu_beta: float | None = None
    ensemble: int = 1

    def apply(self, config: Config) -> Config:
        """The base config with this variant's settings."""
        model = replace(config.model, activation=self.activation,
                        smelu_beta=self.smelu_beta or config.model.smelu_beta)
        return validate(replace(config, model=model,
                                train=replace(config.train, ensemble=self.ensemble)))

    @property
    def slug(self) -> str:
        """A folder name for the variant."""
        return self.name.replace(":", "-")


def parse_variants(text: str) -> list[Variant]:
    """``"relu,smelu:0.5,gelu,relu-ensemble:4"`` -> variants; errors name the bad one."""
    out = []
    for raw in (t.strip() for t in text.split(",")):
        m = VARIANT_RE.match(raw)
        if not m or m["act"] not in ACTIVATIONS:
            raise ValueError(f"bad variant {raw!r}: expected ACTIVATION, smelu:BETA or "
                             f"ACTIVATION-ensemble:K with ACTIVATION in {', '.join(ACTIVATIONS)}")
        if m["ens"]:
            if not m["arg"] or not m["arg"].isdigit() or int(m["arg"]) < 2:
                raise ValueError(f"bad variant {raw!r}: the ensemble size must be a whole "
                                 "number >= 2")
            out.append(Variant(raw, m["act"], ensemble=int(m["arg"])))
        elif m["arg"] is not None:
            if m["act"] != "smelu" or float(m["arg"]) <= 0:
                raise ValueError(f"bad variant {raw!r}: only smelu takes a beta > 0")
            out.append(Variant(raw, "smelu", smelu_beta=float(m["arg"])))
        else:
            out.append(Variant(raw, m["act"]))
    if len({v.name for v in out}) != len(out):
        raise ValueError(f"variants repeat a name: {text!r}")
    return out


def _cached(folder: Path, config: Config, seed: int, checksum: str, split: str
            ) -> LoadedModel | None:
    try:
        model = load(folder)
    except ExportError:
        return None
    m = model.manifest
    same = (m.get("config") == config.to_dict() and m.get("seed") == seed
            and m.get("data", {}).get("checksum") == checksum and m.get("split") == split)
    return model if same else None


def replica(config: Config, seed: int, folder: Path, splits: Splits, split: str,
            log: Log) -> LoadedModel:
    """The trained export of (config, seed), from the cache or trained now."""
    model = _cached(folder, config, seed, splits.data.checksum, split)
    if model is not None:
        log(f"reusing {model.path}")
        return model
    path = train_and_export(config, seed, folder, folder.parent / f".ckpt-{folder.name}",
                            splits=splits, extra={"split": split}, log=log)
    return load(path)


def request_latency(model: LoadedModel, users: np.ndarray, items: np.ndarray,
                    repeats: int = 30) -> float:
    """Median seconds of one ``rank`` request scoring every item for a user."""
    model.rank(int(users[0]), items)  # warm-up
    times = []
    for user in users[:repeats]:
        started = time.perf_counter()
        model.rank(int(user), items)
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def rank_all(model: LoadedModel, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Scores [len(users), len(items)] of every item for each user."""
    grid_users = np.repeat(users, len(items))
    grid_items = np.tile(items, len(users))
    return model.score(grid_users, grid_items).reshape(len(users), len(items))


def pair_metrics(a: LoadedModel, b: LoadedModel, splits: Splits, config: Config,
                 users: np.ndarray, tau_users: int) -> dict[str, Any]:
    """Accuracy of each replica and reproducibility metrics between the two."""
    ev = splits.eval
    pa, pb = a.score(ev.user_id, ev.item_id), b.score(ev.user_id, ev.item_id)
    acc_a = accuracy(config.model, ev.rating, pa)
    acc_b = accuracy(config.model, ev.rating, pb)
    items = splits.tables.item_ids
    ra, rb = rank_all(a, users, items), rank_all(b, users, items)
    out: dict[str, Any] = {k: (acc_a[k] + acc_b[k]) / 2 for k in acc_a}
    out["relative_pd"] = metrics.relative_pd(pa, pb)
    out["absolute_pd"] = metrics.absolute_pd(pa, pb)
    for k in SWAP_KS:
        out[f"top{k}_swap_rate"] = metrics.topk_swap_rate(ra, rb, k)
    out["kendall_tau"] = float(np.mean([metrics.kendall_tau(ra[i], rb[i])
                                        for i in range(min(tau_users, len(users)))]))
    out["train_seconds"] = (a.manifest["training"]["seconds"]
                            + b.manifest["training"]["seconds"]) / 2
    out["train_examples_per_second"] = (a.manifest["training"]["examples_per_second"]
                                        + b.manifest["training"]["examples_per_second"]) / 2
    out["parameters"] = a.manifest["parameters"]
    out["request_seconds"] = (request_latency(a, users, items)
                              + request_latency(b, users, items)) / 2
    return out


def summarize(values: list[float]) -> dict[str, Any]:
    """Mean, standard deviation (over pairs) and the values."""
    arr = np.asarray(values, np.float64)
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if arr.size > 1 else 0.0,
            "values": [float(v) for v in arr]}


def run(config: Config, variants: list[Variant], pairs: int, work_dir: str | Path,
        users: int = 943, tau_users: int = 100, validation: bool = False,
        log: Log = say, on_variant: Callable[[str, dict], None] | None = None
        ) -> dict[str, Any]:
    """Trains (or loads) ``pairs`` replica pairs per variant and measures them.

    Returns {"variants": {name: {metric: summary}}, ...}. ``validation`` evaluates on a
    validation split carved from the train split, for tuning without the eval split.
    """
    if pairs < 1:
        raise ValueError(f"--pairs must be >= 1, got {pairs}")
    if users < 1:
        raise ValueError(f"--users must be >= 1, got {users}")
    split_name = "validation" if validation else "eval"
    splits = prepare_data(config, validation=validation)
    rank_users = np.unique(splits.eval.user_id)[:users]
    work_dir = Path(work_dir)
    results: dict[str, Any] = {}
    for variant in variants:
        vconfig = variant.apply(config)
        per_pair = []
        for p in range(pairs):
            log(f"{variant.name}: pair {p + 1}/{pairs}")
            a, b = (replica(vconfig, seed, work_dir / variant.slug / f"pair{p}-{r}", splits,
                            split_name, log)
                    for r, seed in (("a", 2 * p + 1), ("b", 2 * p + 2)))
            per_pair.append(pair_metrics(a, b, splits, vconfig, rank_users, tau_users))
        summary = {k: summarize([m[k] for m in per_pair]) for k in per_pair[0]}
        results[variant.name] = summary
        if on_variant:
            on_variant(variant.name, summary)
        log(f"{variant.name}: relative PD {summary['relative_pd']['mean']:.4f}, top-10 swap "
            f"{summary['top10_swap_rate']['mean']:.4f}, "
            f"{'rmse' if 'rmse' in summary else 'auc'} "
            f"{summary.get('rmse', summary.get('auc'))['mean']:.4f}")
    return {"split": split_name, "pairs": pairs, "ranking_users": int(len(rank_users)),
            "ranking_items": int(len(splits.tables.item_ids)),
            "eval_rows": len(splits.eval), "data_checksum": splits.data.checksum,
            "config": config.to_dict(), "variants": results}


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Writes JSON atomically."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(path)
