"""Writing an export in TF Serving's layout (``BASE/VERSION/``), atomically.

Signatures of an export:

- ``serving_default``: ``user_id`` int64 [B], ``item_id`` int64 [B] -> ``score`` float32 [B]
  (the predicted rating, or the probability of a positive for the binary task).
- ``rank``: ``user_id`` int64 [], ``item_ids`` int64 [N] -> ``scores`` float32 [N].
- ``rank_with_features``: as ``rank`` plus the user's ``gender``, ``occupation``, ``zip``
  (string []) and ``age`` (int64 []), used instead of the stored features (new users).
- ``catalog``: no inputs -> ``item_ids`` int64 [M], the items the model knows.
- ``users``: no inputs -> ``user_ids`` int64 [U], the users the model has features for.

Item side features are looked up inside the model from tables saved with it. An ensemble's
members are saved together and averaged in the graph, so it serves as one model.
``manifest.json`` inside the version folder records config, data checksum, seeds and metrics.
The version is written to a hidden temporary folder and renamed into place, so a server
never sees half an export.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from steadyrank.core.fileio import atomic_write_json
from steadyrank.model.artifact.layout import (
    CATALOG,
    MANIFEST,
    RANK,
    RANK_WITH_FEATURES,
    SERVING_DEFAULT,
    USER_FEATURES,
    USERS,
    versions,
)
from steadyrank.model.artifact.reader import ExportError
from steadyrank.model.data.tables import FeatureTables
from steadyrank.model.network.ranking import RankingModel


class ServingModule(tf.Module):
    """The members of a trained model behind the serving signatures."""

    def __init__(self, members: list[RankingModel], tables: FeatureTables, task: str) -> None:
        super().__init__(name="steadyrank")
        self.members = list(members)
        self.task = task
        self.item_ids = tf.constant(tables.item_ids, tf.int64)
        self.user_ids = tf.constant(tables.user_ids, tf.int64)

    def score(self, user_id: tf.Tensor, item_id: tf.Tensor,
              user_codes: tf.Tensor | None = None) -> tf.Tensor:
        """Mean over members of the score (rating, or probability for the binary task)."""
        inputs = {"user_id": user_id, "item_id": item_id}
        if user_codes is not None:
            inputs["user_codes"] = user_codes
        outputs = []
        for member in self.members:
            out = tf.reshape(member(inputs), [-1])
            outputs.append(tf.sigmoid(out) if self.task == "binary" else out)
        return tf.add_n(outputs) / len(outputs)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64, name="user_id"),
                                  tf.TensorSpec([None], tf.int64, name="item_id")])
    def serve(self, user_id: tf.Tensor, item_id: tf.Tensor) -> dict[str, tf.Tensor]:
        """serving_default: scores of (user_id, item_id) pairs."""
        return {"score": self.score(user_id, item_id)}

    @tf.function(input_signature=[tf.TensorSpec([], tf.int64, name="user_id"),
                                  tf.TensorSpec([None], tf.int64, name="item_ids")])
    def rank(self, user_id: tf.Tensor, item_ids: tf.Tensor) -> dict[str, tf.Tensor]:
        """Scores of candidate items for one user."""
        return {"scores": self.score(tf.fill(tf.shape(item_ids), user_id), item_ids)}

    @tf.function(input_signature=[
        tf.TensorSpec([], tf.int64, name="user_id"),
        tf.TensorSpec([None], tf.int64, name="item_ids"),
        *(tf.TensorSpec([], tf.as_dtype(dtype), name=name)
          for name, dtype in USER_FEATURES.items())])
    def rank_with_features(self, user_id: tf.Tensor, item_ids: tf.Tensor,
                           *features: tf.Tensor) -> dict[str, tf.Tensor]:
        """Scores of candidate items for one user described by the given features
        (``layout.USER_FEATURES``, in that order)."""
        named = dict(zip(USER_FEATURES, features, strict=True))
        codes = self.members[0].encode_user_features(named)
        n = tf.shape(item_ids)
        return {"scores": self.score(tf.fill(n, user_id), item_ids,
                                     tf.tile(codes[None, :], tf.stack([n[0], 1])))}

    @tf.function(input_signature=[])
    def catalog(self) -> dict[str, tf.Tensor]:
        """The item ids the model knows."""
        return {"item_ids": tf.identity(self.item_ids)}

    @tf.function(input_signature=[])
    def users(self) -> dict[str, tf.Tensor]:
        """The user ids the model has stored side features for."""
        return {"user_ids": tf.identity(self.user_ids)}

    def signatures(self) -> dict[str, Any]:
        """Concrete functions by signature name, for ``tf.saved_model.save``."""
        return {SERVING_DEFAULT: self.serve.get_concrete_function(),
                RANK: self.rank.get_concrete_function(),
                RANK_WITH_FEATURES: self.rank_with_features.get_concrete_function(),
                CATALOG: self.catalog.get_concrete_function(),
                USERS: self.users.get_concrete_function()}


def parameter_count(members: list[RankingModel]) -> int:
    """Number of trainable scalars over all members (the serving cost in weights)."""
    return int(sum(np.prod(v.shape) for m in members for v in m.trainable_variables))


def export(module: ServingModule, base: str | Path, manifest: dict[str, Any],
           version: int | None = None) -> Path:
    """Saves ``module`` as ``base/VERSION`` (next free version by default); returns the path."""
    base = Path(base)
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=base, prefix=".tmp-export-"))
    try:
        tf.saved_model.save(module, str(tmp / "model"), signatures=module.signatures())
        staged = tmp / "model"
        while True:
            number = version if version is not None else max(versions(base), default=0) + 1
            record = {**manifest, "version": number, "created": time.time(),
                      "signatures": sorted(module.signatures()),
                      "tensorflow": tf.__version__}
            atomic_write_json(staged / MANIFEST, record)
            target = base / str(number)
            try:
                os.rename(staged, target)  # atomic; fails if the version already exists
                return target
            except OSError as err:
                if not target.exists():
                    raise ExportError(f"{target}: cannot move the export into place: "
                                      f"{err}") from None
                if version is not None:
                    raise ExportError(f"{target}: version already exists") from None
                # Another writer took this version number first: take the next one.
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
