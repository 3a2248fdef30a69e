"""Export in TF Serving's layout (``BASE/VERSION/``), written atomically, and loading back.

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

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from steadyrank.model.layout import MANIFEST, USER_FEATURES, atomic_write_json, versions
from steadyrank.model.ranking import FeatureTables, RankingModel
from steadyrank.ops import load_library
from steadyrank.ops._errors import SteadyRankError


class ExportError(SteadyRankError, RuntimeError):
    """An export cannot be written or read; the message names the folder."""


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
        return {"serving_default": self.serve.get_concrete_function(),
                "rank": self.rank.get_concrete_function(),
                "rank_with_features": self.rank_with_features.get_concrete_function(),
                "catalog": self.catalog.get_concrete_function(),
                "users": self.users.get_concrete_function()}


def score_in_batches(serve: Any, user_id: np.ndarray, item_id: np.ndarray,
                     batch: int = 65536) -> np.ndarray:
    """Scores of (user, item) pairs through ``serve(user_id=, item_id=)["score"]``, batched."""
    user_id, item_id = np.asarray(user_id, np.int64), np.asarray(item_id, np.int64)
    parts = [serve(user_id=tf.constant(user_id[i:i + batch]),
                   item_id=tf.constant(item_id[i:i + batch]))["score"].numpy()
             for i in range(0, len(user_id), batch)]
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


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


def resolve(path: str | Path) -> Path:
    """A version folder: ``path`` itself, or the latest version under a base folder."""
    path = Path(path)
    if (path / "saved_model.pb").exists():
        return path
    found = versions(path)
    if not found:
        raise ExportError(f"{path}: no model version (expected {path}/VERSION/saved_model.pb)")
    return path / str(found[-1])


@dataclass
class LoadedModel:
    """An export loaded for scoring in Python."""

    path: Path
    manifest: dict[str, Any]
    module: Any

    @property
    def item_ids(self) -> np.ndarray:
        """The catalog of item ids."""
        return self.module.signatures["catalog"]()["item_ids"].numpy()

    def score(self, user_id: np.ndarray, item_id: np.ndarray, batch: int = 65536) -> np.ndarray:
        """serving_default scores of (user, item) pairs, float32 [B]."""
        return score_in_batches(self.module.signatures["serving_default"], user_id, item_id,
                                batch)

    def rank(self, user_id: int, item_ids: np.ndarray) -> np.ndarray:
        """``rank`` signature scores of candidate items for one user."""
        return self.module.signatures["rank"](
            user_id=tf.constant(user_id, tf.int64),
            item_ids=tf.constant(np.asarray(item_ids, np.int64)))["scores"].numpy()


def read_manifest(version: Path) -> dict[str, Any]:
    """The manifest of a version folder, without loading its graph."""
    try:
        return json.loads((version / MANIFEST).read_text())
    except (OSError, ValueError) as err:
        raise ExportError(f"{version}: unreadable {MANIFEST}: {err}") from None


def load(path: str | Path) -> LoadedModel:
    """Loads a version folder (or the latest version under a base folder)."""
    path = resolve(path)
    manifest = read_manifest(path)
    load_library()  # the SmeLU ops must be registered before a graph using them loads
    return LoadedModel(path, manifest, tf.saved_model.load(str(path)))
