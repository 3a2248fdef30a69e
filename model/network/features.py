"""The model's input layer, built from the schema and the train rows' statistics.

Every categorical and multi-hot feature finds its row in an embedding table (one table per
feature, or one shared by name): a vocabulary of the values seen often enough (a numeric
category's bucket, a truncated string), or hash buckets. Multi-hot values are mean-pooled.
Numeric features pass through their transform (``standardize`` with the training mean and
standard deviation, kept in the graph) into the dense part. User and item facts are not
inputs: the model holds a table of each id's facts, taken from the training rows, and looks
them up by id, unless a request brings them (a user the model has not seen).

The primary tables (the ids' tables, or every table when the schema declares no ids) take
the stabilising settings: ``model.min_id_count`` (a vocabulary threshold),
``model.embedding_init`` (or the older ``model.embedding_init_scale``) and
``model.embedding_l2``; ``model.oov_buckets`` gives the ids' out-of-vocabulary rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import tensorflow as tf
import tf_keras as keras

from steadyrank.model.config import ModelConfig
from steadyrank.model.data.batches import FACT_ROWS, ROWS, Lookups
from steadyrank.model.data.columns import PAD_INT, PAD_STRING, bucketize, truncated
from steadyrank.model.data.stats import DataStats
from steadyrank.model.network.layers import PACKAGE, EmbeddingTable
from steadyrank.model.schema import FACT_ROLES, ID_ROLES, Feature, Schema

SIDE_INIT_SCALE = 0.05  # the other tables' initial range (Keras' default)


def input_spec(feature: Feature, batch: int | None = None) -> tf.TensorSpec:
    """The TensorSpec of a feature's raw values for ``batch`` rows (None: any number, []:
    a scalar); a multi-hot feature adds its ``max_len`` axis."""
    dtype = {"int64": tf.int64, "float": tf.float32, "string": tf.string}[feature.value_dtype]
    shape = [] if batch == [] else [batch]
    if feature.kind == "multi_hot":
        shape = [*shape, feature.max_len]
    return tf.TensorSpec(shape, dtype, name=feature.name)


@dataclass(frozen=True)
class TableSpec:
    """What an embedding table holds: its vocabulary (or hash buckets) and its settings."""

    vocabulary: np.ndarray
    dim: int
    dtype_name: str
    oov_buckets: int
    hash_buckets: int
    init_scale: float
    l2: float
    init_kind: str = "uniform"

    @property
    def rows(self) -> int:
        """Rows of the table: hash buckets, or the kept values plus the out-of-vocabulary
        rows."""
        return self.hash_buckets or len(self.vocabulary) + self.oov_buckets


def table_specs(schema: Schema, stats: DataStats, config: ModelConfig) -> dict[str, TableSpec]:
    """Each embedding table of the schema: the values seen often enough (most frequent
    first) or hash buckets, its width, its out-of-vocabulary rows and, for the primary
    tables (the ids', or every one without ids), the stabilising settings."""
    has_ids = any(f.role in ID_ROLES for f in schema.features)
    specs: dict[str, TableSpec] = {}
    for f in schema.features:
        if not f.embedded or f.table in specs:
            continue
        primary = f.role in ID_ROLES or not has_ids
        min_count = max(f.min_count, config.min_id_count if primary else 1)
        vocab = stats.vocabularies.get(f.table)
        kept = vocab.kept(min_count, f.max_size) if vocab is not None else np.array([])
        dtype = "int64" if f.boundaries else f.dtype
        kind, scale = config.table_init if primary else ("uniform", SIDE_INIT_SCALE)
        specs[f.table] = TableSpec(
            np.asarray(kept, object if dtype == "string" else np.int64),
            f.embedding_dim or config.embedding_dim, dtype,
            config.oov_buckets if f.role in ID_ROLES else 1, f.hash_buckets,
            scale, config.embedding_l2 if primary else 0.0, kind)
    return specs


def lookups(schema: Schema, specs: dict[str, TableSpec], stats: DataStats,
            names: tuple[str, ...]) -> Lookups:
    """What the data pipeline can look up itself for the inputs ``names``: the table rows
    of a feature with a vocabulary and one out-of-vocabulary row (the model then takes its
    rows, not its values), and each id's row in its fact table."""
    tables, facts = {}, {}
    for name in names:
        f = schema.feature(name)
        spec = specs.get(f.table) if f.embedded else None
        if spec is not None and not spec.hash_buckets and spec.oov_buckets == 1:
            tables[name] = _arrow(spec.vocabulary, spec.dtype_name)
        if f.role in ID_ROLES and f.role in stats.facts:
            facts[name] = _arrow(stats.facts[f.role].ids, f.dtype)
    return Lookups(tables, facts)


def _arrow(values: np.ndarray, dtype_name: str) -> pa.Array:
    return pa.array(np.asarray(values).tolist(),
                    pa.string() if dtype_name == "string" else pa.int64())


def _vocabulary_rows(vocabulary: np.ndarray, keys: np.ndarray, oov: int) -> np.ndarray:
    """The rows an EmbeddingTable's lookup gives ``keys`` (0: out of vocabulary), in numpy."""
    flat = keys.reshape(-1)
    if vocabulary.dtype == object:
        position = {v: i for i, v in enumerate(vocabulary.tolist())}
        rows = np.array([position.get(k, -oov) for k in flat.tolist()], np.int64) + oov
    else:
        order = np.argsort(vocabulary, kind="stable")
        ordered = vocabulary[order]
        at = np.clip(np.searchsorted(ordered, flat), 0, max(len(ordered) - 1, 0))
        hit = (ordered[at] == flat) if len(ordered) else np.zeros(len(flat), bool)
        rows = np.where(hit, order[at] + oov, 0).astype(np.int64) if len(ordered) else \
            np.zeros(len(flat), np.int64)
    return rows.reshape(keys.shape)


def hash_rows(keys: np.ndarray, buckets: int) -> np.ndarray:
    """The hash bucket of each key, as :class:`EmbeddingTable` picks it (int64 keys by
    floor modulo, strings by TensorFlow's fast fingerprint hash)."""
    if keys.dtype == object:
        if not keys.size:
            return np.zeros(keys.shape, np.int64)
        return tf.strings.to_hash_bucket_fast(tf.constant(keys.tolist()), buckets).numpy()
    return np.mod(keys.astype(np.int64), buckets)


def value_rows(feature: Feature, vocabulary: np.ndarray, oov_buckets: int, hash_buckets: int,
               values: np.ndarray) -> np.ndarray:
    """A categorical or multi-hot feature's raw values -> its table's rows, in numpy, as the
    model finds them (bucketized or truncated first; 0 or an OOV row for a value without a
    row of its own; -1 for a multi-hot pad)."""
    keys = values
    if feature.boundaries:
        keys = bucketize(keys, feature.boundaries)
    elif feature.truncate:
        keys = truncated(keys, feature.truncate)
    keys = np.asarray(keys)
    if hash_buckets:
        rows = hash_rows(keys, hash_buckets)
    else:
        rows = _vocabulary_rows(vocabulary, keys, oov_buckets)
    if feature.kind == "multi_hot":
        rows = np.where(values != (PAD_STRING if feature.dtype == "string" else PAD_INT),
                        rows, -1)
    return rows.astype(np.int64)


def row_counts(schema: Schema, specs: Mapping[str, Any], stats: DataStats,
               train_inputs: Iterable[Mapping[str, np.ndarray]] = ()) -> dict[str, np.ndarray]:
    """How many training values each row of each table took (int64; 0 for the
    out-of-vocabulary rows, which training never reaches). ``specs``: the tables by name
    (TableSpec or EmbeddingTable: vocabulary, oov_buckets, hash_buckets). A vocabulary's
    rows take their values' counts from the statistics; hash buckets are counted over
    ``train_inputs`` (the train rows' raw values by feature name), which only tables with
    buckets need."""
    counts = {}
    hashed = []
    for name, spec in specs.items():
        if spec.hash_buckets:
            counts[name] = np.zeros(spec.hash_buckets, np.int64)
            hashed.append(name)
            continue
        # A vocabulary is the most frequent values first (Vocabulary.kept): a prefix.
        vocab, kept = stats.vocabularies[name], len(spec.vocabulary)
        if not np.array_equal(vocab.values[:kept], spec.vocabulary):
            raise ValueError(f"table {name!r}: its vocabulary is not these statistics'")
        counts[name] = np.concatenate([np.zeros(spec.oov_buckets, np.int64),
                                       vocab.counts[:kept]]).astype(np.int64)
    if hashed:
        features = [f for f in schema.features if f.embedded and f.table in hashed]
        for inputs in train_inputs:
            for f in (f for f in features if f.name in inputs):  # facts come by id
                spec = specs[f.table]
                rows = value_rows(f, spec.vocabulary, spec.oov_buckets, spec.hash_buckets,
                                  inputs[f.name]).reshape(-1)
                counts[f.table] += np.bincount(rows[rows >= 0], minlength=spec.hash_buckets)
    return counts


@keras.saving.register_keras_serializable(package=PACKAGE)
class FeatureEncoder(keras.layers.Layer):
    """Raw feature values by name -> one vector per row: the embeddings of the ids and
    categorical features (looked-up facts included), then the numeric features."""

    def __init__(self, schema: Schema, stats: DataStats, config: ModelConfig,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.schema = schema
        self.config = config
        self.tables: dict[str, EmbeddingTable] = {
            name: EmbeddingTable(spec.vocabulary, spec.dim, spec.dtype_name,
                                 oov_buckets=spec.oov_buckets, hash_buckets=spec.hash_buckets,
                                 init_scale=spec.init_scale, l2=spec.l2,
                                 init_kind=spec.init_kind, name=f"table_{name}")
            for name, spec in table_specs(schema, stats, config).items()}
        self.moments = {f.name: (stats.numeric[f.name].mean, max(stats.numeric[f.name].std,
                                                                   1e-6))
                        for f in schema.features if f.kind == "numeric"}
        # Facts: each id's row in its fact table (0: an id the model has not seen), and
        # each fact's table rows (embedded) or transformed value (numeric) per fact row.
        self.fact_lookups: dict[str, keras.layers.Layer] = {}
        self.fact_ids: dict[str, np.ndarray] = {}
        self.fact_values: dict[str, tf.Tensor] = {}
        for role in ID_ROLES:
            facts = stats.facts.get(role)
            id_feature = schema.with_role(role)
            if facts is None or not id_feature:
                continue
            ids = np.asarray(facts.ids, object if id_feature[0].dtype == "string" else np.int64)
            self.fact_ids[role] = ids
            lookup = (keras.layers.StringLookup if id_feature[0].dtype == "string"
                      else keras.layers.IntegerLookup)
            self.fact_lookups[role] = lookup(vocabulary=ids if len(ids) else None,
                                             num_oov_indices=1, name=f"{role}_facts")
            for f in schema.features:
                if f.is_fact and FACT_ROLES[f.role] == role:
                    self.fact_values[f.name] = tf.constant(self._fact_rows(f, facts.values[f.name]))

    def _fact_rows(self, f: Feature, values: np.ndarray) -> np.ndarray:
        """A fact's per-id model values with row 0 (unknown id) first: table rows for an
        embedded fact (-1 pads a multi-hot row), the transformed value for a numeric one."""
        if f.kind == "numeric":
            out = self._transform_np(f, values.astype(np.float64)).astype(np.float32)
            return np.concatenate([[0.0], out]).astype(np.float32)
        table = self.tables[f.table]
        rows = value_rows(f, table.vocabulary, table.oov_buckets, table.hash_buckets, values)
        if f.kind == "multi_hot":
            return np.concatenate([np.full((1, f.max_len), -1), rows]).astype(np.int64)
        return np.concatenate([[0], rows]).astype(np.int64)

    def _transform_np(self, f: Feature, x: np.ndarray) -> np.ndarray:
        if f.transform == "log1p":
            return np.sign(x) * np.log1p(np.abs(x))
        if f.transform == "standardize":
            mean, std = self.moments[f.name]
            return (x - mean) / std
        return x

    def _transform(self, f: Feature, x: tf.Tensor) -> tf.Tensor:
        x = tf.cast(x, tf.float32)
        if f.transform == "log1p":
            return tf.sign(x) * tf.math.log1p(tf.abs(x))
        if f.transform == "standardize":
            mean, std = self.moments[f.name]
            return (x - mean) / std
        return x

    def rows(self, f: Feature, values: tf.Tensor) -> tf.Tensor:
        """A categorical or multi-hot feature's raw values -> table rows (-1: a pad)."""
        keys = values
        if f.boundaries:
            keys = tf.cast(tf.raw_ops.Bucketize(input=tf.cast(values, tf.float32),
                                                boundaries=list(f.boundaries)), tf.int64)
        elif f.truncate:
            keys = tf.strings.substr(values, 0, f.truncate, unit="UTF8_CHAR")
        rows = self.tables[f.table].index(keys)
        if f.kind == "multi_hot":
            pad = PAD_STRING if f.dtype == "string" else PAD_INT
            rows = tf.where(tf.equal(values, pad), tf.constant(-1, tf.int64), rows)
        return rows

    def embed(self, f: Feature, rows: tf.Tensor, training: bool | None) -> tf.Tensor:
        """Table rows -> the feature's embedding (a multi-hot one mean-pooled over its
        non-pad rows; all pads give zeros)."""
        table = self.tables[f.table]
        if f.kind != "multi_hot":
            return table(rows, training=training)
        valid = tf.cast(rows >= 0, tf.float32)[..., None]
        found = table(tf.maximum(rows, 0), training=training) * valid
        return tf.reduce_sum(found, axis=-2) / tf.maximum(tf.reduce_sum(valid, axis=-2), 1.0)

    def fact_rows(self, role: str, inputs: Mapping[str, tf.Tensor]) -> tf.Tensor:
        """Each row's id's row in its fact table (0: unknown), looked up here or given by
        the training pipeline (``sr_facts.NAME``)."""
        name = self.schema.with_role(role)[0].name
        if FACT_ROWS + name in inputs:
            return tf.cast(inputs[FACT_ROWS + name], tf.int64)
        return tf.cast(self.fact_lookups[role](inputs[name]), tf.int64)

    def call(self, inputs: Mapping[str, tf.Tensor], facts: Mapping[str, tf.Tensor] | None = None,
             training: bool | None = None) -> tf.Tensor:
        """``inputs``: the ids and context features [B, ...] (or, from the training pipeline,
        ``sr_rows.NAME``: a feature's table rows); ``facts``: user or item facts given for
        these rows (raw values [B, ...]) instead of the stored ones."""
        facts = facts or {}
        fact_rows = {role: self.fact_rows(role, inputs) for role in self.fact_lookups}
        parts, dense = [], []
        for f in self.schema.features:
            stored = f.is_fact and f.name not in facts
            if f.embedded:
                if stored:
                    rows = tf.gather(self.fact_values[f.name], fact_rows[FACT_ROLES[f.role]])
                elif ROWS + f.name in inputs:  # looked up by the training pipeline
                    rows = tf.cast(inputs[ROWS + f.name], tf.int64)
                else:
                    rows = self.rows(f, facts.get(f.name, inputs.get(f.name)))
                parts.append(self.embed(f, rows, training))
            else:
                value = (tf.gather(self.fact_values[f.name], fact_rows[FACT_ROLES[f.role]])
                         if stored else self._transform(f, facts.get(f.name,
                                                                     inputs.get(f.name))))
                dense.append(tf.reshape(tf.cast(value, tf.float32), [-1, 1]))
        return tf.concat(parts + dense, axis=-1)

    def get_config(self) -> dict[str, Any]:
        """The schema and table sizes (a trained encoder is restored from its SavedModel or
        a checkpoint, never rebuilt from this config: its tables are data)."""
        return {**super().get_config(), "schema": self.schema.to_dict(),
                "tables": {k: t.rows for k, t in self.tables.items()}}
