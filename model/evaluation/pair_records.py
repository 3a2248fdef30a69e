"""Finished replica pairs' numbers, kept as small JSON records so a comparison resumes anywhere.

Cached exports let an interrupted ``compare`` pick up where it stopped, but only on the machine
that holds them (a Criteo-shaped replica is hundreds of MB). A pair record is a pair's metrics
(a few hundred bytes) under the key that produced them: the variant's full config, both
replicas' seeds, the data checksum, the split and the ranking requests. A record whose key
matches stands in for training and measuring the pair again, so a long study can be committed
pair by pair and finished by a later session on a fresh machine.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from steadyrank.core.fileio import atomic_write_json
from steadyrank.model.config import Config, from_dict, same_config

VERSION = 1


def key(config: Config, seeds: tuple[tuple[int, int], tuple[int, int]], checksum: str,
        split: str, requests: int, tau_users: int) -> dict[str, Any]:
    """What a pair's numbers depend on (besides the code): config, seeds, data, split,
    and how many ranking requests (and Kendall-tau users) were measured."""
    return {"config": config.to_dict(), "seeds": [list(s) for s in seeds],
            "data_checksum": checksum, "split": split, "ranking_requests": requests,
            "tau_users": tau_users}


def _same(recorded: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Whether a recorded key is ``wanted``: the config as :func:`same_config` reads it back
    (keys a newer config adds at their defaults still match), everything else exactly."""
    rest = {k: v for k, v in wanted.items() if k != "config"}
    return (same_config(recorded.get("config"), from_dict(wanted["config"]))
            and all(recorded.get(k) == v for k, v in rest.items()))


def read(path: Path, wanted: dict[str, Any]) -> dict[str, Any] | None:
    """The metrics recorded at ``path`` if its key is ``wanted``; None when there is no
    record, it is unreadable, or it was made under another key."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("version") != VERSION:
        return None
    if not isinstance(record.get("key"), dict) or not _same(record["key"], wanted):
        return None
    metrics = record.get("metrics")
    return metrics if isinstance(metrics, dict) and metrics else None


def write(path: Path, wanted: dict[str, Any], metrics: dict[str, Any]) -> None:
    """Records a finished pair's metrics under its key (atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, {"version": VERSION, "key": wanted, "metrics": metrics})
