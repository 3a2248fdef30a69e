"""Writing an export in TF Serving's layout (``BASE/VERSION/``), atomically.

The signatures follow the schema (the feature names below are the schema's):

- ``serving_default``: the ids and the context features, one value each per row [B] (a
  multi-hot feature [B, max_len]) -> ``score`` float32 [B]: the probability of a positive
  for ``binary``, the predicted value for ``rating``. User and item facts are looked up by
  id inside the model.
- ``examples``: ``examples`` string [B], serialized ``tf.Example`` protos holding those
  features -> ``score`` [B] (TF Serving's Regress and Classify build on it). A missing
  feature takes its ``fill``, else the call fails naming it.
- With both ids: ``rank`` (the user id [], ``item_ids`` [N], each context feature []) ->
  ``scores`` [N]; ``rank_with_features`` (``rank`` plus the user facts [], for a user the
  model has not seen); ``catalog`` (-> ``item_ids``, the items the model knows) and, with
  user facts, ``users`` (-> ``user_ids``, the users it has facts for). A schema without ids
  (Criteo's) exports none of these and the manifest says so.

An ensemble's members are saved together and averaged in the graph, so it serves as one
model. ``manifest.json`` inside the version folder records the config, the schema (names,
kinds, roles, dtypes, vocabulary sizes, transforms), the data checksum, seeds and metrics.
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

from steadyrank.model.artifact.layout import (
    CATALOG,
    EXAMPLES,
    EXAMPLES_INPUT,
    ITEM_IDS,
    RANK,
    RANK_WITH_FEATURES,
    RAREST_COUNT,
    RARITY,
    SCORE,
    SCORES,
    SERVING_DEFAULT,
    USER_IDS,
    USERS,
    versions,
)
from steadyrank.model.artifact.manifest import Manifest
from steadyrank.model.artifact.reader import ExportError
from steadyrank.model.data.columns import PAD_INT, PAD_STRING
from steadyrank.model.network.features import input_spec
from steadyrank.model.network.ranking import RankingModel
from steadyrank.model.schema import Feature, Schema


def _example_spec(feature: Feature) -> Any:
    """How ``tf.io.parse_example`` reads a feature: fixed-length with its fill as default,
    or variable-length for a multi-hot list."""
    dtype = input_spec(feature).dtype
    if feature.kind == "multi_hot":
        return tf.io.VarLenFeature(dtype)
    default = None
    if feature.fill is not None:
        default = {tf.string: str, tf.int64: int, tf.float32: float}[dtype](feature.fill)
    return tf.io.FixedLenFeature([], dtype, default_value=default)


class ServingModule(tf.Module):
    """The members of a trained model behind the serving signatures of its schema."""

    def __init__(self, members: list[RankingModel], schema: Schema, catalog: np.ndarray,
                 users: np.ndarray, row_counts: dict[str, np.ndarray] | None = None) -> None:
        super().__init__(name="steadyrank")
        for member in members:
            if getattr(member, "optimizer", None) is not None:
                # The export holds the weights, not the optimizer's slots (with Adam, twice
                # the tables again); training resumes from checkpoints, not exports.
                member._delete_tracking("optimizer")
        self.members = list(members)
        self.schema = schema
        self.task = schema.label.task
        self.inputs = tuple(f for f in schema.features if not f.is_fact)
        self.context = tuple(f for f in self.inputs if f.role == "context")
        self.user_facts = schema.with_role("user")
        self.serve = tf.function(self._serve, input_signature=[
            {f.name: input_spec(f) for f in self.inputs}])
        self.examples = tf.function(self._examples, input_signature=[
            tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)])
        self._signatures = {SERVING_DEFAULT: self.serve, EXAMPLES: self.examples}
        self.counted = tuple(f for f in self.inputs if f.embedded
                             and f.table in (row_counts or {}))
        if self.counted:
            # Each table row's training count, beside the model (not in a member, so warm
            # starts and ensembles see the same weights as before).
            self.row_counts = {table: tf.Variable(np.asarray(counts, np.int64),
                                                  trainable=False, name=f"counts_{table}")
                               for table, counts in row_counts.items()
                               if any(f.table == table for f in self.counted)}
            self.rarity = tf.function(self._rarity, input_signature=[
                {f.name: input_spec(f) for f in self.inputs}])
            self._signatures[RARITY] = self.rarity
        if schema.ranks:
            user, item = schema.user_id, schema.item_id
            ids = lambda values, feature: tf.constant(  # noqa: E731
                values, tf.string if feature.dtype == "string" else tf.int64)
            self.item_ids = ids(catalog, item)
            self.user_ids = ids(users, user)
            rank_spec = {user.name: input_spec(user, []),
                         ITEM_IDS: tf.TensorSpec([None], input_spec(item).dtype, name=ITEM_IDS),
                         **{f.name: input_spec(f, []) for f in self.context}}
            self.rank = tf.function(self._rank, input_signature=[rank_spec])
            self.catalog = tf.function(self._catalog, input_signature=[])
            self._signatures.update({RANK: self.rank, CATALOG: self.catalog})
            if self.user_facts:
                self.rank_with_features = tf.function(self._rank, input_signature=[
                    {**rank_spec, **{f.name: input_spec(f, []) for f in self.user_facts}}])
                self.users = tf.function(self._users, input_signature=[])
                self._signatures.update({RANK_WITH_FEATURES: self.rank_with_features,
                                         USERS: self.users})

    def score(self, inputs: dict[str, tf.Tensor],
              facts: dict[str, tf.Tensor] | None = None) -> tf.Tensor:
        """Mean over members of the score (a rating, or a probability for ``binary``)."""
        outputs = []
        for member in self.members:
            out = tf.reshape(member(inputs, facts), [-1])
            outputs.append(tf.sigmoid(out) if self.task == "binary" else out)
        return tf.add_n(outputs) / len(outputs)

    def _serve(self, inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """serving_default: the score of each row."""
        return {SCORE: self.score(inputs)}

    def _examples(self, serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        """The score of each serialized tf.Example."""
        parsed = tf.io.parse_example(serialized, {f.name: _example_spec(f)
                                                  for f in self.inputs})
        for f in self.inputs:
            if f.kind == "multi_hot":
                pad = PAD_STRING if f.dtype == "string" else PAD_INT
                dense = tf.sparse.to_dense(parsed[f.name], default_value=pad)[:, :f.max_len]
                width = tf.shape(dense)[1]
                parsed[f.name] = tf.pad(dense, [[0, 0], [0, f.max_len - width]],
                                        constant_values=pad)
        return {SCORE: self.score(parsed)}

    def _rank(self, inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """The scores of N candidate items for one user (and, for rank_with_features, the
        user's facts), with the request's context."""
        n = tf.shape(inputs[ITEM_IDS])[0]
        rows = {self.schema.item_id.name: inputs[ITEM_IDS]}
        for f in (self.schema.user_id, *self.context):
            rows[f.name] = _broadcast(inputs[f.name], n)
        facts = {f.name: _broadcast(inputs[f.name], n) for f in self.user_facts
                 if f.name in inputs}
        return {SCORES: self.score(rows, facts or None)}

    def _rarity(self, inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """rarity: each row's rarest categorical value's training count (the fewest
        training values its table row took; 0 for an out-of-vocabulary row)."""
        encoder = self.members[0].encoder
        rarest = None
        for f in self.counted:
            rows = encoder.rows(f, inputs[f.name])
            counts = tf.gather(self.row_counts[f.table], tf.maximum(rows, 0))
            if f.kind == "multi_hot":  # pads do not count; a row of pads counts as common
                counts = tf.reduce_min(tf.where(rows >= 0, counts, tf.int64.max), axis=-1)
            rarest = counts if rarest is None else tf.minimum(rarest, counts)
        return {RAREST_COUNT: rarest}

    def _catalog(self) -> dict[str, tf.Tensor]:
        """The item ids the model knows."""
        return {ITEM_IDS: tf.identity(self.item_ids)}

    def _users(self) -> dict[str, tf.Tensor]:
        """The user ids the model has stored facts for."""
        return {USER_IDS: tf.identity(self.user_ids)}

    def signatures(self) -> dict[str, Any]:
        """Concrete functions by signature name, for ``tf.saved_model.save``."""
        return {name: fn.get_concrete_function() for name, fn in self._signatures.items()}


def _broadcast(value: tf.Tensor, n: tf.Tensor) -> tf.Tensor:
    """A request's scalar (or [max_len] list) repeated for n rows."""
    return tf.repeat(value[None], n, axis=0)


def parameter_count(members: list[RankingModel]) -> int:
    """Number of trainable scalars over all members (the serving cost in weights)."""
    return int(sum(np.prod(v.shape) for m in members for v in m.trainable_variables))


def export(module: ServingModule, base: str | Path, manifest: Manifest,
           version: int | None = None) -> Path:
    """Saves ``module`` as ``base/VERSION`` (next free version by default) with ``manifest``
    (stamped with the version, the time, the signatures and TensorFlow's version); returns
    the path."""
    base = Path(base)
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=base, prefix=".tmp-export-"))
    try:
        tf.saved_model.save(module, str(tmp / "model"), signatures=module.signatures())
        staged = tmp / "model"
        while True:
            number = version if version is not None else max(versions(base), default=0) + 1
            manifest.updated(version=number, created=time.time(),
                             signatures=sorted(module.signatures()),
                             tensorflow=tf.__version__).write(staged)
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
