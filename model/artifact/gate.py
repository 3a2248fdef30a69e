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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steadyrank.core.fileio import atomic_write_json


@dataclass(frozen=True)
class RecordFile:
    """One kind of record beside the models: ``BASE/PREFIX + NAME + .json``."""

    prefix: str

    def path(self, base: str | Path, name: str) -> Path:
        """Where model ``name``'s record lives under ``base``."""
        return Path(base) / f"{self.prefix}{name}.json"

    def read(self, base: str | Path, name: str) -> dict[str, Any] | None:
        """Model ``name``'s record (None if there is none or it is unreadable)."""
        try:
            return json.loads(self.path(base, name).read_text())
        except (OSError, ValueError):
            return None

    def write(self, base: str | Path, name: str, record: dict[str, Any]) -> None:
        """Replaces model ``name``'s record atomically (making ``base`` if the trainer
        writes before its first version)."""
        Path(base).mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.path(base, name), record)


GATE = RecordFile(".churn-gate-")  # the latest churn gate decision
FOLLOW_STATUS = RecordFile(".follow-status-")  # a following trainer's status
gate_path, read_gate, write_gate = GATE.path, GATE.read, GATE.write
follow_status_path, read_follow_status, write_follow_status = (
    FOLLOW_STATUS.path, FOLLOW_STATUS.read, FOLLOW_STATUS.write)
