"""Train and publish a replica pair (``NAME`` and ``NAME-b``) for serving: what the trainer runs.

One round trains replica A and replica B (same data and config, seeds ``2v - 1`` and ``2v``
for version ``v``) into a hidden staging folder under the model base path, measures their
offline reproducibility (:func:`steadyrank.model.compare.pair_metrics`: relative and
absolute PD on the eval split, top-k swap rate and Kendall tau of full-catalog rankings),
writes it into both manifests, and then moves both versions into place with a rename each
(same file system: atomic). A server never sees a half-written version, and never sees a
version without its offline numbers. Older versions beyond ``keep`` are removed.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from steadyrank.model import compare, export
from steadyrank.model.config import Config
from steadyrank.model.train import Log, prepare_data, say
from steadyrank.model.workflow import train_and_export

REPLICA_SUFFIX = "-b"  # the serving layout's second replica (steadyrank.service.models)
OFFLINE_KEYS = ("relative_pd", "absolute_pd", "top1_swap_rate", "top5_swap_rate",
                "top10_swap_rate", "kendall_tau")


@dataclass(frozen=True)
class Round:
    """One published replica pair."""

    version: int
    paths: tuple[Path, Path]
    offline: dict[str, float]
    seconds: float


def next_version(base: Path, name: str) -> int:
    """One above the highest version of either replica."""
    found = export.versions(base / name) + export.versions(base / (name + REPLICA_SUFFIX))
    return max(found, default=0) + 1


def _set_offline(version_dir: Path, offline: dict[str, float], partner: str) -> None:
    manifest_path = version_dir / export.MANIFEST
    manifest = json.loads(manifest_path.read_text())
    manifest["offline_reproducibility"] = {**offline, "partner": partner}
    tmp = manifest_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    tmp.replace(manifest_path)


def train_round(config: Config, base: str | Path, name: str = "ml", users: int = 100,
                log: Log = say) -> Round:
    """Trains, measures and publishes version ``next_version`` of ``name`` and ``name-b``."""
    base = Path(base)
    started = time.perf_counter()
    splits = prepare_data(config)
    version = next_version(base, name)
    names = (name, name + REPLICA_SUFFIX)
    seeds = (2 * version - 1, 2 * version)
    base.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=base, prefix=".staging-"))
    try:
        staged = []
        for replica, seed in zip(names, seeds, strict=True):
            log(f"version {version}: training {replica} (seed {seed})")
            staged.append(train_and_export(
                config, seed, staging / replica, staging / f"ckpt-{replica}", splits=splits,
                version=version, extra={"replica_of": name}, log=log))
        a, b = (export.load(p) for p in staged)
        rank_users = np.unique(splits.eval.user_id)[:users]
        measured = compare.pair_metrics(a, b, splits, config, rank_users, tau_users=users)
        offline = {k: float(measured[k]) for k in OFFLINE_KEYS}
        for path, partner in zip(staged, reversed(names), strict=True):
            _set_offline(path, offline, partner)
        published = []
        for replica, path in zip(names, staged, strict=True):
            target = base / replica / str(version)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.rename(path, target)  # atomic: the server sees all of it or nothing
            published.append(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    seconds = time.perf_counter() - started
    log(f"version {version}: published {published[0]} and {published[1]} in {seconds:.0f} s; "
        f"offline relative PD {offline['relative_pd']:.4f}, top-10 swap "
        f"{offline['top10_swap_rate']:.3f}")
    return Round(version, (published[0], published[1]), offline, seconds)


def prune(base: str | Path, name: str, keep: int, log: Log = say) -> list[Path]:
    """Removes all but the ``keep`` newest versions of ``name`` and ``name-b``.

    Each old version is renamed to a hidden folder first (the server stops seeing it at
    once), then deleted.
    """
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    base = Path(base)
    removed = []
    for replica in (name, name + REPLICA_SUFFIX):
        for version in export.versions(base / replica)[:-keep]:
            folder = base / replica / str(version)
            hidden = folder.with_name(f".removing-{version}")
            os.rename(folder, hidden)
            shutil.rmtree(hidden, ignore_errors=True)
            removed.append(folder)
            log(f"removed old version {folder}")
    return removed


def run(config: Config, base: str | Path, name: str = "ml", retrain_interval: float = 0.0,
        keep: int = 3, users: int = 100, log: Log = say,
        should_stop: Callable[[float], bool] | None = None) -> list[Round]:
    """One round, then (with ``retrain_interval`` > 0) a round every interval until stopped.

    ``should_stop(seconds)`` waits up to ``seconds`` and says whether to stop (default:
    sleep, never stop); rounds are never interrupted halfway.
    """
    if retrain_interval < 0:
        raise ValueError(f"retrain interval must be >= 0 seconds, got {retrain_interval}")
    wait = should_stop or (lambda seconds: time.sleep(seconds) or False)
    rounds: list[Round] = []
    while True:
        rounds.append(train_round(config, base, name, users, log))
        prune(base, name, keep, log)
        if retrain_interval <= 0:
            return rounds
        log(f"next retrain in {retrain_interval:.0f} s")
        if wait(retrain_interval):
            return rounds


def offline_metrics(manifest: dict[str, Any]) -> dict[str, float]:
    """The offline reproducibility numbers a trainer wrote into a manifest ({} if none)."""
    found = manifest.get("offline_reproducibility", {})
    return {k: float(found[k]) for k in OFFLINE_KEYS if k in found}
