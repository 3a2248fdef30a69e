"""Offline reproducibility evaluation: replica pairs per variant, PD, swap rate, accuracy, cost.

For each source of disagreement (``--vary``), each variant (an activation, a SmeLU beta, an
ensemble size, plus techniques) and each pair index p, replicas A and B are trained on the
same data and config, exported, loaded back, and compared on the eval split. What differs
between A and B:

- ``all``: the init seed and the row-order seed (2p+1 vs 2p+2 for both);
- ``init``: the init seed only (the order seed is 2p+1 for both);
- ``order``: the row-order seed only (the init seed is 2p+1 for both);
- ``async``: nothing but asynchronous parameter-server training (both seeds 2p+1; needs a
  cluster, ``steadyrank cluster -- compare ...``), which applies stale gradients in an
  order that differs between runs.

Exports are cached in a work folder and reused when their manifest matches (config, seeds,
data checksum, split), so an interrupted comparison picks up where it stopped. Each finished
pair's numbers are also kept as a small record (:mod:`pair_records`), which a later run on
another machine reuses without the exports.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from steadyrank.core.log import Log, say
from steadyrank.model.artifact.reader import (
    ExportError,
    LoadedModel,
    load,
    read_export_manifest,
    resolve,
)
from steadyrank.model.config import (
    ACTIVATIONS,
    EMBEDDING_OPTIMIZERS,
    Config,
    ConfigError,
    same_config,
    techniques,
    validate,
)
from steadyrank.model.data.splits import Prepared, prepare_data
from steadyrank.model.evaluation import pair_records
from steadyrank.model.evaluation.evalset import Requests, ranking_requests
from steadyrank.model.evaluation.pace import Pace
from steadyrank.model.evaluation.pairs import (
    VARY,
    replica_pair_metrics,
    replica_seeds,
)
from steadyrank.model.measures import metrics
from steadyrank.model.schema import NO_RANKING
from steadyrank.model.training.workflow import train_and_export

VARIANT_RE = re.compile(r"^(?P<act>[a-z]+)(?P<ens>-ensemble)?(?::(?P<arg>[0-9.]+))?$")


# Technique modifiers, ``+NAME`` or ``+NAME:VALUE`` after the base variant:
# name -> (config section, key, how the value is read).
MODIFIERS: dict[str, tuple[str, str, Callable[[str], Any]]] = {
    "ema": ("train", "weight_averaging", lambda v: f"ema:{v}"),
    "polyak": ("train", "weight_averaging", lambda v: f"polyak:{v}"),
    "codistill": ("train", "codistill", float),
    "clip": ("train", "clip_norm", float),
    "window": ("train", "shuffle", lambda v: f"window:{v}"),
    "time": ("train", "shuffle", lambda v: "time"),
    "full": ("train", "shuffle", lambda v: "full"),
    "mincount": ("model", "min_id_count", int),
    "l2": ("model", "embedding_l2", float),
    "init": ("model", "embedding_init_scale", float),
    "einit": ("model", "embedding_init", str),
    "emb": ("train", "embeddings", lambda v: _embedding_optimizer(v)),
    "dim": ("model", "embedding_dim", int),
    "cross": ("model", "cross_layers", int),
    "norm": ("model", "layer_norm", lambda v: True),
    "nonorm": ("model", "layer_norm", lambda v: False),
    "unit": ("model", "gsmelu_per_unit", lambda v: True),
    "learn": ("model", "gsmelu_learn", lambda v: tuple(v.split("/"))),
    "lr": ("train", "learning_rate", float),
    "decay": ("train", "lr_decay", str),
    "epochs": ("train", "epochs", int),
    "batch": ("train", "batch_size", int),
}
NO_VALUE = ("time", "full", "norm", "nonorm", "unit")


def _embedding_optimizer(text: str) -> dict[str, Any]:
    """``"adagrad"`` / ``"adagrad:0.05"`` -> the [train.embeddings] keys it sets."""
    name, _, rate = text.partition(":")
    if name not in EMBEDDING_OPTIMIZERS:
        raise ValueError(f"unknown embedding optimizer {name!r}")
    return {"optimizer": name, **({"learning_rate": float(rate)} if rate else {})}


@dataclass(frozen=True)
class Variant:
    """A change to the base config: activation, SmeLU beta, ensemble size, techniques."""

    name: str
    activation: str
    smelu_beta: float | None = None
    ensemble: int = 1
    overrides: tuple[tuple[str, str, Any], ...] = ()

    def apply(self, config: Config) -> Config:
        """The base config with this variant's settings."""
        model = replace(config.model, activation=self.activation,
                        smelu_beta=self.smelu_beta or config.model.smelu_beta)
        train = replace(config.train, ensemble=self.ensemble)
        for section, key, value in self.overrides:
            part = model if section == "model" else train
            if isinstance(value, dict):  # some keys of a sub-table ([train.embeddings])
                value = replace(getattr(part, key), **value)
            part = replace(part, **{key: value})
            if section == "model":
                model = part
            else:
                train = part
        return validate(replace(config, model=model, train=train))

    @property
    def slug(self) -> str:
        """A folder name for the variant."""
        return re.sub(r"[^A-Za-z0-9_.-]", "-", self.name)

    @property
    def single_model(self) -> bool:
        """Served at the cost of one model (not an ensemble)."""
        return self.ensemble == 1


def _parse_base(raw: str, base: str) -> Variant:
    m = VARIANT_RE.match(base)
    if not m or m["act"] not in ACTIVATIONS:
        raise ValueError(f"bad variant {raw!r}: expected ACTIVATION, smelu:BETA or "
                         f"ACTIVATION-ensemble:K with ACTIVATION in {', '.join(ACTIVATIONS)}")
    if m["ens"]:
        if not m["arg"] or not m["arg"].isdigit() or int(m["arg"]) < 2:
            raise ValueError(f"bad variant {raw!r}: the ensemble size must be a whole "
                             "number >= 2")
        return Variant(raw, m["act"], ensemble=int(m["arg"]))
    if m["arg"] is not None:
        if m["act"] not in ("smelu", "gsmelu") or float(m["arg"]) <= 0:
            raise ValueError(f"bad variant {raw!r}: only smelu and gsmelu take a beta > 0")
        return Variant(raw, m["act"], smelu_beta=float(m["arg"]))
    return Variant(raw, m["act"])


def _parse_modifier(raw: str, text: str) -> tuple[str, str, Any]:
    name, _, value = text.partition(":")
    if name not in MODIFIERS:
        raise ValueError(f"bad variant {raw!r}: unknown technique {name!r}; known: "
                         f"{', '.join(MODIFIERS)}")
    if (name in NO_VALUE) != (value == ""):
        want = "no value" if name in NO_VALUE else "a value (NAME:VALUE)"
        raise ValueError(f"bad variant {raw!r}: +{name} takes {want}")
    section, key, read = MODIFIERS[name]
    try:
        return section, key, read(value)
    except ValueError:
        raise ValueError(f"bad variant {raw!r}: bad value {value!r} for +{name}") from None


def parse_variants(text: str) -> list[Variant]:
    """``"relu,smelu:0.5,relu-ensemble:4,smelu:2+ema:0.999+codistill:0.5"`` -> variants;
    errors name the bad one. Modifiers after ``+`` turn techniques on (see MODIFIERS); each
    variant's settings are validated here, before anything trains."""
    out = []
    for raw in (t.strip() for t in text.split(",")):
        base, *mods = raw.split("+")
        variant = _parse_base(raw, base)
        variant = replace(variant, overrides=tuple(_parse_modifier(raw, m) for m in mods))
        try:  # every setting checked now, not when its turn to train comes
            variant.apply(Config())
        except ConfigError as err:
            raise ValueError(f"bad variant {raw!r}: {err}") from None
        out.append(variant)
    if len({v.name for v in out}) != len(out):
        raise ValueError(f"variants repeat a name: {text!r}")
    return out


def _cached_version(folders: tuple[Path, ...], config: Config, seeds: tuple[int, int],
                    checksum: str, split: str) -> Path | None:
    """The first export under ``folders`` of (config, seeds) on this data and split, by its
    manifest alone (no graph is loaded)."""
    for folder in folders:
        try:
            version = resolve(folder)
            m = read_export_manifest(version)
        except ExportError:
            continue
        if (same_config(m.config, config) and m.order_seeds == seeds
                and m.data_checksum == checksum and m.split == split):
            return version
    return None


def replica(config: Config, seeds: tuple[int, int], folder: Path, prepared: Prepared,
            split: str, log: Log, elsewhere: tuple[Path, ...] = ()
            ) -> tuple[LoadedModel, bool]:
    """The trained export of (config, (init seed, order seed)), cached or trained now, and
    whether it was trained now.

    ``elsewhere``: other folders that may already hold the same replica (replica A of pair p
    has the same seeds under ``--vary all``, ``init`` and ``order``); training is
    deterministic, so a matching manifest there is reused instead of training it again.
    """
    version = _cached_version((folder, *elsewhere), config, seeds, prepared.checksum, split)
    if version is not None:
        model = load(version)
        log(f"reusing {model.path}")
        return model, False
    path = train_and_export(config, seeds[0], folder, folder.parent / f".ckpt-{folder.name}",
                            prepared=prepared, extra={"split": split}, log=log,
                            order_seed=seeds[1])
    return load(path), True


def summarize(values: list[float]) -> dict[str, Any]:
    """Mean, standard deviation (over pairs) and the values."""
    arr = np.asarray(values, np.float64)
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if arr.size > 1 else 0.0,
            "values": [float(v) for v in arr]}


def _source_config(config: Config, vary: str) -> Config:
    """The config a source trains with: asynchronous parameter servers for ``async``."""
    if vary == "async":
        if config.train.strategy != "parameter-server":
            raise ValueError("--vary async trains under parameter servers: run it in a cluster "
                             "('steadyrank cluster --ps N --workers M -- compare ...')")
        return config
    return config  # under parameter servers, asynchrony adds to the seeds' differences


def _sharing(config: Config, source: str) -> tuple[str, ...]:
    """The other sources whose replicas may equal this source's (same config and seeds).

    Only synchronous training is deterministic: under parameter servers none is shared."""
    if config.train.strategy == "parameter-server":
        return ()
    return tuple(other for other in VARY if other not in (source, "async"))


def _siblings(config: Config, work_dir: Path, source: str, slug: str, name: str
              ) -> tuple[Path, ...]:
    """Where other sources keep a replica that may equal this one (same config and seeds)."""
    return tuple(work_dir / other / slug / name for other in _sharing(config, source))


def _trainings(variant: Variant, config: Config, vary: list[str], source: str) -> int:
    """The models one pair of ``variant`` trains for ``source`` when nothing is cached: both
    replicas, or only B when an earlier source of the same pair index trained the same A
    (one of ``_siblings``' folders)."""
    earlier = vary[:vary.index(source)]
    return variant.ensemble * (1 if set(earlier) & set(_sharing(config, source)) else 2)


def _measure_pair(variant: Variant, config: Config, source: str, p: int, prepared: Prepared,
                  requests: Requests | None, ranking_users: int, split: str, tau_users: int,
                  work_dir: Path, records: Path, log: Log
                  ) -> tuple[dict[str, Any], bool, int]:
    """Pair ``p``'s metrics for a variant and source, whether they came from its record (one
    that matches), and how many of its two replicas were trained now (0 from the record or
    cached exports); measured numbers are recorded."""
    vconfig = variant.apply(config)
    record = records / source / variant.slug / f"pair{p}.json"
    key = pair_records.key(vconfig, replica_seeds(source, p), prepared.checksum, split,
                           ranking_users, tau_users)
    found = pair_records.read(record, key)
    if found is not None:
        log(f"reusing the record {record}")
        return found, True, 0
    folder = work_dir / source / variant.slug
    (a, a_trained), (b, b_trained) = (
        replica(vconfig, seeds, folder / f"pair{p}-{r}", prepared, split, log,
                _siblings(vconfig, work_dir, source, variant.slug, f"pair{p}-{r}"))
        for r, seeds in zip("ab", replica_seeds(source, p), strict=True))
    out = replica_pair_metrics(a, b, prepared, requests, tau_users)
    pair_records.write(record, key, out)
    return out, False, int(a_trained) + int(b_trained)


def _summaries(per_pair: list[dict[str, Any]]) -> dict[str, Any]:
    """{metric: summary over pairs} of the metrics every pair has (a record made before a
    metric existed lacks it)."""
    return {k: summarize([m[k] for m in per_pair]) for k in per_pair[0]
            if all(k in m for m in per_pair)}


def _log_summary(log: Log, source: str, name: str, summary: dict[str, Any]) -> None:
    swap = (f"top-10 swap {summary[metrics.swap_key(10)]['mean']:.4f}, "
            if metrics.swap_key(10) in summary else "")
    accuracy_key = "rmse" if "rmse" in summary else "auc"
    log(f"{source} / {name}: relative PD {summary['relative_pd']['mean']:.4f}, "
        f"{swap}{accuracy_key} {summary[accuracy_key]['mean']:.4f}")


def run(config: Config, variants: list[Variant], pairs: int, work_dir: str | Path,
        users: int = 943, tau_users: int = 100, validation: bool = False,
        log: Log = say,
        vary: list[str] | tuple[str, ...] = ("all",), first_pair: int = 0,
        records: str | Path | None = None) -> dict[str, Any]:
    """Trains (or loads) ``pairs`` replica pairs per source and variant and measures them.

    Returns {"sources": {vary: {name: {metric: summary}}}, "variants": the first source's,
    ...}. ``validation`` evaluates on a validation split carved from the train split, for
    tuning without the eval split. Pair indices run from ``first_pair``: a final eval run can
    use seeds no earlier eval look has used. ``records`` (default ``work_dir``) keeps each
    finished pair's numbers; a pair whose record matches is neither trained nor measured again.
    """
    if pairs < 1:
        raise ValueError(f"--pairs must be >= 1, got {pairs}")
    if first_pair < 0:
        raise ValueError(f"--first-pair must be >= 0, got {first_pair}")
    if users < 1:
        raise ValueError(f"--users must be >= 1, got {users}")
    vary = list(vary)
    for source in vary:
        replica_seeds(source, 0)  # names a bad source before any training
        _source_config(config, source)
    split_name = "validation" if validation else "eval"
    prepared = prepare_data(config, validation=validation, log=log)
    requests = ranking_requests(prepared, users)
    work_dir = Path(work_dir)
    records = Path(records) if records is not None else work_dir
    ranking_users = int(len(requests)) if requests is not None else 0
    summaries: dict[str, dict[str, Any]] = {source: {} for source in vary}
    # Variant by variant and pair by pair, every source in turn: replica A of pair p (the
    # same under all, init and order) is trained once and used by every table while its
    # export is still on this machine; the records let another machine go on from there.
    # Single models first and ensembles (K trainings a replica) last, so the cheap variants'
    # numbers are in early; the report keeps the order the variants were given in.
    pace = Pace([_trainings(v, config, vary, source)
                 for v in variants for _ in range(pairs) for source in vary])
    for variant in sorted(variants, key=lambda v: v.ensemble):
        measured: dict[str, list[dict[str, Any]]] = {source: [] for source in vary}
        for n, p in enumerate(range(first_pair, first_pair + pairs)):
            for source in vary:
                log(f"{source} / {variant.name}: pair {n + 1}/{pairs} (index {p})")
                planned = _trainings(variant, config, vary, source)
                started = time.perf_counter()
                numbers, reused, trained = _measure_pair(
                    variant, _source_config(config, source), source, p, prepared, requests,
                    ranking_users, split_name, tau_users, work_dir, records, log)
                measured[source].append(numbers)
                log(pace.finished(planned, time.perf_counter() - started,
                                  trained * variant.ensemble, reused))
        for source in vary:
            summaries[source][variant.name] = _summaries(measured[source])
            _log_summary(log, source, variant.name, summaries[source][variant.name])
    sources = {source: {v.name: summaries[source][v.name] for v in variants}
               for source in vary}
    used = [s for source in vary for p in range(first_pair, first_pair + pairs)
            for replica_pair in replica_seeds(source, p) for s in replica_pair]
    return {"split": split_name, "pairs": pairs, "first_pair": first_pair,
            "seeds": [min(used), max(used)],
            "ranking_users": ranking_users,
            "ranking_items": int(len(requests.items)) if requests is not None else 0,
            "ranking": None if requests is not None else NO_RANKING,
            "eval_rows": prepared.eval.rows, "data_checksum": prepared.checksum,
            "config": config.to_dict(), "vary": vary, "sources": sources,
            "variants": sources[vary[0]],
            "techniques": {v.name: techniques(v.apply(config)) for v in variants},
            "single_model": {v.name: v.single_model for v in variants}}
