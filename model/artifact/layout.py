"""The serving layout, written by the trainer and read by the server: one owner per fact.

``BASE/NAME/VERSION/`` folders (TensorFlow Serving's layout) each hold a SavedModel and its
``manifest.json``; ``NAME-b`` beside ``NAME`` is the second replica; hidden entries (a
staging folder, an export in progress, the churn gate record) are never versions. The names
of the exported signatures and of their inputs and outputs are defined here and nowhere
else. This module imports nothing else from the project, so every reader and writer can
share it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

MANIFEST = "manifest.json"
REPLICA_SUFFIX = "-b"  # NAME-b is the second replica of NAME

# The exported signatures.
SERVING_DEFAULT = "serving_default"  # ids -> score, one per pair
RANK = "rank"  # one user id, N candidate item ids -> N scores
RANK_WITH_FEATURES = "rank_with_features"  # rank, with the user's features given
CATALOG = "catalog"  # -> the item ids the model knows
USERS = "users"  # -> the user ids the model has stored features for
EXAMPLES = "examples"  # serialized tf.Example protos -> score, one per example
RARITY = "rarity"  # serving_default's inputs -> each row's rarest value's training count
SIGNATURES = (CATALOG, EXAMPLES, RANK, RANK_WITH_FEATURES, RARITY, SERVING_DEFAULT, USERS)
REQUIRED_SIGNATURES = (SERVING_DEFAULT,)  # every export; the others follow its schema
RANKING_SIGNATURES = (RANK, CATALOG)  # what a model with user and item ids exports
# Names inside the signatures that are not features of the schema.
ITEM_IDS = "item_ids"  # rank's candidates; catalog's output
USER_IDS = "user_ids"  # users' output
EXAMPLES_INPUT = "examples"  # the examples signature's input
SCORE = "score"  # serving_default's and examples' output
SCORES = "scores"  # rank's output
RAREST_COUNT = "rarest_count"  # rarity's output: int64 training count, 0 out of vocabulary
# The slices of rows by their rarest value's training count: (name, lowest count).
RARITY_BUCKETS = (("oov", 0), ("1", 1), ("2-4", 2), ("5-99", 5), ("100+", 100))
RESERVED_NAMES = (ITEM_IDS, USER_IDS, EXAMPLES_INPUT)  # no feature may take these names


def rarity_bucket(counts: np.ndarray) -> np.ndarray:
    """The RARITY_BUCKETS index of each training count (0: out of vocabulary)."""
    lows = np.array([low for _, low in RARITY_BUCKETS[1:]])
    return np.searchsorted(lows, np.asarray(counts), side="right")


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


def primary_name(name: str) -> str | None:
    """The primary model of a second replica's name (``NAME-b`` -> ``NAME``); None when
    ``name`` does not name a second replica."""
    if name.endswith(REPLICA_SUFFIX) and len(name) > len(REPLICA_SUFFIX):
        return name[:-len(REPLICA_SUFFIX)]
    return None
