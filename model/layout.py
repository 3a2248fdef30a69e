"""The serving layout, written by the trainer and read by the server: one owner per fact.

``BASE/NAME/VERSION/`` folders (TensorFlow Serving's layout) each hold a SavedModel and its
``manifest.json``; ``NAME-b`` beside ``NAME`` is the second replica; hidden entries (a
staging folder, an export in progress, the churn gate record) are never versions. This
module imports nothing else from the project, so every reader and writer can share it.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
REPLICA_SUFFIX = "-b"  # NAME-b is the second replica of NAME
SWAP_KS = (1, 5, 10)  # the k of every top-k swap rate, offline and live
# The exported signatures.
SIGNATURES = ("catalog", "rank", "rank_with_features", "serving_default", "users")
REQUIRED_SIGNATURES = ("serving_default", "rank", "catalog")
# The user features rank_with_features takes after user_id and item_ids, in signature order,
# each with its dtype (a scalar per request). The export's signature, the Rank API's checks
# and its error messages are all built from this one table.
USER_FEATURES: dict[str, str] = {"gender": "string", "occupation": "string", "zip": "string",
                                 "age": "int64"}


def version_folders(model_dir: str | Path) -> dict[int, Path]:
    """{version: folder} of a model folder's numeric subfolders ({} if unreadable)."""
    try:
        entries = list(Path(model_dir).iterdir())
    except OSError:
        return {}
    return {int(p.name): p for p in entries if p.name.isdigit() and p.is_dir()}


def versions(model_dir: str | Path) -> list[int]:
    """The version numbers under a model folder, ascending."""
    return sorted(version_folders(model_dir))


def replica_name(name: str) -> str:
    """The second replica's model name."""
    return name + REPLICA_SUFFIX


def atomic_write_text(path: str | Path, text: str) -> None:
    """Writes ``text`` to a temporary file beside ``path`` and renames it into place: a
    reader sees the old file or the new one, never a part."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | Path, payload: Any, sort_keys: bool = True) -> None:
    """:func:`atomic_write_text` of indented JSON (keys sorted unless ``sort_keys`` is off,
    for payloads whose order means something, such as a report's variants)."""
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=sort_keys) + "\n")
