"""The trainer's records beside the models, which the server reads and exports as metrics
(hidden, so a server never takes them for a model version):

- the churn gate's decision, ``BASE/.churn-gate-NAME.json``: written after every retrain
  measured against the serving version (published, or held back over a churn bound);
- a following trainer's status, ``BASE/.follow-status-NAME.json``: its latest round (number,
  rows, the serving version's progressive numbers on the newest shard, out-of-vocabulary
  share, when it ended) and, at every look for new shards, how many wait and since when.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from steadyrank.core.fileio import atomic_write_json

GATE_PREFIX = ".churn-gate-"  # + NAME + ".json": the latest churn gate decision
FOLLOW_PREFIX = ".follow-status-"  # + NAME + ".json": a following trainer's status


def gate_path(base: str | Path, name: str) -> Path:
    """Where the decision record of model ``name`` lives under the base path."""
    return Path(base) / f"{GATE_PREFIX}{name}.json"


def read_gate(base: str | Path, name: str) -> dict[str, Any] | None:
    """The latest churn gate decision for ``name`` (None if there is none or it is
    unreadable)."""
    try:
        return json.loads(gate_path(base, name).read_text())
    except (OSError, ValueError):
        return None


def write_gate(base: str | Path, name: str, record: dict[str, Any]) -> None:
    """Replaces the decision record of ``name`` atomically."""
    atomic_write_json(gate_path(base, name), record)


def follow_status_path(base: str | Path, name: str) -> Path:
    """Where the following trainer of model ``name`` writes its status."""
    return Path(base) / f"{FOLLOW_PREFIX}{name}.json"


def read_follow_status(base: str | Path, name: str) -> dict[str, Any] | None:
    """A following trainer's status for ``name`` (None if there is none or it is
    unreadable)."""
    try:
        return json.loads(follow_status_path(base, name).read_text())
    except (OSError, ValueError):
        return None


def write_follow_status(base: str | Path, name: str, record: dict[str, Any]) -> None:
    """Replaces the follow status of ``name`` atomically (making ``base`` if the trainer
    reports before its first version)."""
    Path(base).mkdir(parents=True, exist_ok=True)
    atomic_write_json(follow_status_path(base, name), record)
