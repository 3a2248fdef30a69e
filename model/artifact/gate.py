"""The churn gate's decision record: ``BASE/.churn-gate-NAME.json``.

The trainer writes one after every retrain it measured against the serving version
(published, or held back over a churn bound); the server reads it and exports it as
metrics. Hidden, so a server never takes it for a model version.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from steadyrank.core.fileio import atomic_write_json

GATE_PREFIX = ".churn-gate-"  # + NAME + ".json": the latest churn gate decision


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
