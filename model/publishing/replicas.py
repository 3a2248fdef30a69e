"""Train and publish a replica pair (``NAME`` and ``NAME-b``) for serving: what the trainer runs.

One round trains replica A and replica B (same data and config; for version ``v`` the seeds
of :func:`~steadyrank.model.evaluation.pairs.replica_seeds` with pair ``v - 1``: with
``vary="all"`` A is seeded ``2v - 1`` and B ``2v``, with ``"order"`` they share the init seed
and differ by row order, with ``"init"`` the reverse) into a hidden staging folder under the
model base path, measures their offline reproducibility
(:func:`~steadyrank.model.evaluation.pairs.replica_pair_metrics`: relative and absolute
PD on the eval split, top-k swap rate and Kendall tau of full-catalog rankings), writes it
into both manifests, and then moves both versions into place with a rename each (same file
system: atomic). A server never sees a half-written version, and
never sees a version without its offline numbers. Older versions beyond ``keep`` are removed.

Retrains: ``warm_start`` starts each replica from its own serving version's weights, and the
churn gate compares the new A with the serving A on the eval split before publishing; over
``max_churn_swap`` (top-10 swap) or ``max_churn_pd`` (relative PD) the round publishes
nothing and says why. Every gate decision is written to ``.churn-gate-NAME.json`` in the base
path, which the server exports as metrics.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from steadyrank.core.log import Log, say
from steadyrank.model.artifact import reader
from steadyrank.model.artifact.gate import read_gate, write_gate
from steadyrank.model.artifact.layout import replica_name, versions
from steadyrank.model.artifact.manifest import Manifest
from steadyrank.model.config import Config
from steadyrank.model.data.splits import Prepared, prepare_data
from steadyrank.model.evaluation import pairs
from steadyrank.model.evaluation.evalset import (
    Requests,
    eval_scores,
    rank_all,
    ranking_requests,
)
from steadyrank.model.measures import metrics
from steadyrank.model.schema import NO_RANKING
from steadyrank.model.training.slot_carry import SlotCarry
from steadyrank.model.training.workflow import train_and_export

OFFLINE_KEYS = metrics.PAIR_KEYS  # the offline numbers a trainer writes into manifests
TOP10 = metrics.swap_key(10)  # the swap rate the churn gate bounds


@dataclass(frozen=True)
class Round:
    """One replica pair: published, or held back by the churn gate (``paths`` empty)."""

    version: int
    paths: tuple[Path, ...]
    offline: dict[str, float]
    seconds: float
    churn: dict[str, Any] | None = None
    published: bool = True


@dataclass(frozen=True)
class Gate:
    """Churn bounds for publishing a retrain (None: no bound)."""

    max_swap: float | None = None
    max_pd: float | None = None

    def reasons(self, churn: dict[str, float]) -> list[str]:
        """Why ``churn`` (against the serving version) is over the bounds; [] if it is not."""
        out = []
        if self.max_swap is not None and TOP10 in churn and churn[TOP10] > self.max_swap:
            out.append(f"top-10 swap {churn[TOP10]:.4f} > {self.max_swap} "
                       "(--max-churn-swap)")
        if self.max_pd is not None and churn["relative_pd"] > self.max_pd:
            out.append(f"relative PD {churn['relative_pd']:.4f} > {self.max_pd} "
                       "(--max-churn-pd)")
        return out

    @property
    def active(self) -> bool:
        """Whether any bound is set."""
        return self.max_swap is not None or self.max_pd is not None


def next_version(base: Path, name: str) -> int:
    """One above the highest version of either replica."""
    found = versions(base / name) + versions(base / replica_name(name))
    return max(found, default=0) + 1


def _update_manifest(version_dir: Path, **fields: Any) -> None:
    Manifest.read(version_dir).updated(**fields).write(version_dir)


def _serving(base: Path, replica: str) -> Path | None:
    """The newest published version folder of ``replica`` (what a server serves)."""
    found = versions(base / replica)
    return base / replica / str(found[-1]) if found else None


def train_round(config: Config, base: str | Path, name: str = "ml", users: int = 100,
                log: Log = say, vary: str = "all", warm_start: bool = False,
                gate: Gate | None = None, warm_epochs: int = 1,
                warm_lr_scale: float = 0.1, prepared: Prepared | None = None,
                warm_rows: dict | None = None, record: dict[str, Any] | None = None,
                slot_dirs: tuple[Path | None, Path] | None = None) -> Round:
    """Trains and measures version ``next_version`` of ``name`` and ``name-b``, and
    publishes it unless the churn gate holds it back. A warm-started replica trains
    ``warm_epochs`` epochs from the serving weights at ``warm_lr_scale`` times the learning
    rate (its optimizer starts afresh unless ``slot_dirs`` carry its state, and Adam's first
    steps are about the learning rate in every weight, which would shake a trained model); a
    fresh start trains the config's.
    ``prepared`` (default: the config's data), ``warm_rows`` (tables that grew, mapped by
    value), ``record`` (written into both manifests) and ``slot_dirs`` (the folders whose
    REPLICA/ subfolders hold the optimizer state of the serving version, or None,
    and receive this version's) are for continuous training."""
    if warm_epochs < 1:
        raise ValueError(f"--warm-start-epochs must be >= 1, got {warm_epochs}")
    if not warm_lr_scale > 0:
        raise ValueError(f"--warm-start-lr-scale must be > 0, got {warm_lr_scale}")
    base = Path(base)
    gate = gate or Gate()
    started = time.perf_counter()
    prepared = prepared or prepare_data(config, log=log)
    requests = ranking_requests(prepared, users)
    if gate.max_swap is not None and requests is None:
        raise ValueError(f"--max-churn-swap bounds a top-10 swap rate, and {NO_RANKING}; "
                         "bound the relative PD (--max-churn-pd) instead")
    version = next_version(base, name)
    names = (name, replica_name(name))
    seeds = pairs.replica_seeds(vary, version - 1)
    base.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=base, prefix=".staging-"))
    try:
        staged = []
        for replica, (seed, order_seed) in zip(names, seeds, strict=True):
            warm = _serving(base, replica) if warm_start else None
            log(f"version {version}: training {replica} (seed {seed}, order seed "
                f"{order_seed}{f', warm start from {warm}' if warm else ''})")
            run_config = (replace(config, train=replace(
                config.train, epochs=warm_epochs,
                learning_rate=config.train.learning_rate * warm_lr_scale)) if warm else config)
            slots = (SlotCarry(slot_dirs[0] / replica if warm and slot_dirs[0] else None,
                               slot_dirs[1] / replica) if slot_dirs is not None else None)
            staged.append(train_and_export(
                run_config, seed, staging / replica, staging / f"ckpt-{replica}",
                prepared=prepared, version=version,
                extra={"replica_of": name, "vary": vary, **(record or {})},
                log=log, order_seed=order_seed, warm_start=warm,
                warm_rows=warm_rows if warm else None, slots=slots))
        a, b = (reader.load(p) for p in staged)
        measured = pairs.replica_pair_metrics(a, b, prepared, requests, tau_users=users)
        offline = {k: float(measured[k]) for k in OFFLINE_KEYS if k in measured}
        for path, partner in zip(staged, reversed(names), strict=True):
            _update_manifest(path, offline_reproducibility={**offline, "partner": partner})
        churn = _churn(base, name, a, prepared, requests)
        if churn is not None:
            for path in staged:
                _update_manifest(path, churn_vs_previous=churn)
        reasons = gate.reasons(churn) if churn is not None else []
        if gate.active or churn is not None:
            write_gate(base, name, {
                "model": name, "version": version, "published": not reasons,
                "reasons": reasons, "churn": churn, "max_churn_swap": gate.max_swap,
                "max_churn_pd": gate.max_pd, "time": time.time(),
                "rejected": _rejected(base, name) + (1 if reasons else 0)})
        if reasons:
            seconds = time.perf_counter() - started
            log(f"version {version}: NOT published, churn against the serving version "
                f"{churn['version']} is over the bound: {'; '.join(reasons)}")
            return Round(version, (), offline, seconds, churn, published=False)
        published = []
        for replica, path in zip(names, staged, strict=True):
            target = base / replica / str(version)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.rename(path, target)  # atomic: the server sees all of it or nothing
            published.append(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    seconds = time.perf_counter() - started
    shown = (f"; churn vs version {churn['version']}: {_measures(churn)}" if churn else "")
    log(f"version {version}: published {published[0]} and {published[1]} in {seconds:.0f} s; "
        f"offline {_measures(offline)}{shown}")
    return Round(version, (published[0], published[1]), offline, seconds, churn)


def _churn(base: Path, name: str, new: reader.LoadedModel, prepared: Prepared,
           requests: Requests | None) -> dict[str, Any] | None:
    """Relative PD (and, when the schema ranks, top-k swap) of the new replica A against the
    serving one, on the eval split."""
    serving = _serving(base, name)
    if serving is None:
        return None
    old = reader.load(serving)
    (po, _), (pn, _) = eval_scores(old, prepared), eval_scores(new, prepared)
    out: dict[str, Any] = {"version": int(serving.name),
                           "relative_pd": float(metrics.relative_pd(po, pn))}
    if requests is not None and len(requests):
        ro, rn = rank_all(old, requests), rank_all(new, requests)
        for k in metrics.SWAP_KS:
            out[metrics.swap_key(k)] = float(metrics.topk_swap_rate(ro, rn, k))
    return out


def _measures(values: dict[str, Any]) -> str:
    """'relative PD 0.0123, top-10 swap 0.210' (the swap only where there are rankings)."""
    swap = f", top-10 swap {values[TOP10]:.3f}" if TOP10 in values else ""
    return f"relative PD {values['relative_pd']:.4f}{swap}"


def _rejected(base: Path, name: str) -> int:
    found = read_gate(base, name)
    return int(found.get("rejected", 0)) if found else 0


def prune(base: str | Path, name: str, keep: int, log: Log = say) -> list[Path]:
    """Removes all but the ``keep`` newest versions of ``name`` and ``name-b``.

    Each old version is renamed to a hidden folder first (the server stops seeing it at
    once), then deleted.
    """
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    base = Path(base)
    removed = []
    for replica in (name, replica_name(name)):
        for version in versions(base / replica)[:-keep]:
            folder = base / replica / str(version)
            hidden = folder.with_name(f".removing-{version}")
            os.rename(folder, hidden)
            shutil.rmtree(hidden, ignore_errors=True)
            removed.append(folder)
            log(f"removed old version {folder}")
    return removed


def run(config: Config, base: str | Path, name: str = "ml", retrain_interval: float = 0.0,
        keep: int = 3, users: int = 100, log: Log = say,
        should_stop: Callable[[float], bool] | None = None, vary: str = "all",
        warm_start: bool = False, gate: Gate | None = None, warm_epochs: int = 1,
        warm_lr_scale: float = 0.1) -> list[Round]:
    """One round, then (with ``retrain_interval`` > 0) a round every interval until stopped.

    ``should_stop(seconds)`` waits up to ``seconds`` and says whether to stop (default:
    sleep, never stop); rounds are never interrupted halfway.
    """
    if retrain_interval < 0:
        raise ValueError(f"retrain interval must be >= 0 seconds, got {retrain_interval}")
    wait = should_stop or (lambda seconds: time.sleep(seconds) or False)
    rounds: list[Round] = []
    while True:
        rounds.append(train_round(config, base, name, users, log, vary=vary,
                                  warm_start=warm_start, gate=gate, warm_epochs=warm_epochs,
                                  warm_lr_scale=warm_lr_scale))
        prune(base, name, keep, log)
        if retrain_interval <= 0:
            return rounds
        log(f"next retrain in {retrain_interval:.0f} s")
        if wait(retrain_interval):
            return rounds


def offline_metrics(manifest: Manifest) -> dict[str, float]:
    """The offline reproducibility numbers a trainer wrote into a manifest ({} if none)."""
    found = manifest.offline_reproducibility
    return {k: float(found[k]) for k in OFFLINE_KEYS if k in found}
