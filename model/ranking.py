"""The TFRS ranking model: id and side-feature embeddings into a DCN-v2 tower.

Inputs are ``user_id`` and ``item_id`` (int64). User side features (gender, occupation, age
bucket, zip prefix) and item side features (genres, multi-hot and mean-pooled; release year)
are looked up inside the model from tables built from the training data, so a served model
needs only the ids. Unknown ids fall into out-of-vocabulary buckets.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs
import tf_keras as keras

from steadyrank.model.config import ModelConfig
from steadyrank.model.data import Interactions
from steadyrank.model.layers import DeepCrossTower, IdEmbedding, MultiHotEmbedding

AGE_BUCKETS = (18, 25, 35, 45, 50, 56)
# The columns of FeatureTables.user_codes. This is the model's internal layout (checkpoints
# and warm starts depend on it), not the signature's order, which is layout.USER_FEATURES.
USER_CODE_COLUMNS = ("gender", "occupation", "age", "zip")


def _counts(ids: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """How many of ``rows`` hold each of ``ids``."""
    found, counts = np.unique(rows, return_counts=True)
    out = np.zeros(len(ids), np.int64)
    pos = np.searchsorted(found, ids)
    hit = (pos < len(found)) & (found[np.minimum(pos, len(found) - 1)] == ids)
    out[hit] = counts[pos[hit]]
    return out


def vocabulary(ids: np.ndarray, counts: np.ndarray | None, min_count: int) -> np.ndarray:
    """The ids that get their own embedding row: all, or those seen >= ``min_count`` times
    (the rest share the out-of-vocabulary row, as production vocabularies do)."""
    if min_count <= 1 or counts is None:
        return ids
    return ids[counts >= min_count]


def _codes(values: np.ndarray) -> tuple[np.ndarray, tuple[str, ...]]:
    """Integer codes 1..K over the sorted distinct values (0 is kept for out-of-vocabulary)."""
    vocab = tuple(sorted({str(v) for v in values}))
    index = {v: i + 1 for i, v in enumerate(vocab)}
    return np.array([index[str(v)] for v in values], np.int64), vocab


@dataclass(frozen=True)
class FeatureTables:
    """Side-feature tables keyed by raw id; row 0 of every table is the unknown id.

    User codes: gender, occupation and zip prefix (first digit) are 1..K over the sorted
    vocabularies in ``user_vocabs``; age is its bucket in ``AGE_BUCKETS`` plus 1.
    """

    user_ids: np.ndarray
    user_codes: np.ndarray  # [n_users + 1, 4], columns USER_CODE_COLUMNS
    user_vocabs: tuple[tuple[str, ...], ...]  # gender, occupation, zip prefix
    item_ids: np.ndarray
    item_genres: np.ndarray  # [n_items + 1, n_genres] multi-hot
    item_year: np.ndarray  # [n_items + 1] year code
    year_vocab_size: int
    genres: tuple[str, ...]
    # Training rows per id, aligned with user_ids / item_ids (for vocabulary thresholds);
    # None when unknown (every id then gets its own embedding row).
    user_counts: np.ndarray | None = None
    item_counts: np.ndarray | None = None

    def with_counts(self, user_id: np.ndarray, item_id: np.ndarray) -> FeatureTables:
        """These tables with the per-id row counts of the given (training) rows."""
        return replace(self, user_counts=_counts(self.user_ids, user_id),
                       item_counts=_counts(self.item_ids, item_id))

    @property
    def user_vocab_sizes(self) -> tuple[int, ...]:
        """Embedding rows per user feature column (including the unknown row 0)."""
        gender, occupation, zip_prefix = self.user_vocabs
        return (len(gender) + 1, len(occupation) + 1, len(AGE_BUCKETS) + 2, len(zip_prefix) + 1)

    @classmethod
    def from_data(cls, data: Interactions) -> FeatureTables:
        """Builds the tables from a dataset's user and item side features."""
        gender, gender_vocab = _codes(data.users["gender"])
        occupation, occupation_vocab = _codes(data.users["occupation"])
        zip_prefix, zip_vocab = _codes(np.array([str(z)[:1] for z in data.users["zip"]]))
        age = np.digitize(data.users["age"], AGE_BUCKETS) + 1
        user_codes = np.zeros((len(data.user_ids) + 1, len(USER_CODE_COLUMNS)), np.int64)
        columns = {"gender": gender, "occupation": occupation, "age": age, "zip": zip_prefix}
        user_codes[1:] = np.stack([columns[c] for c in USER_CODE_COLUMNS], axis=1)
        item_genres = np.zeros((len(data.item_ids) + 1, len(data.genres)), np.float32)
        item_genres[1:] = data.item_genres
        year_codes, year_vocab = _codes(data.items["year"] // 5 * 5)  # 5-year buckets
        return cls(
            user_ids=data.user_ids, user_codes=user_codes,
            user_vocabs=(gender_vocab, occupation_vocab, zip_vocab),
            item_ids=data.item_ids, item_genres=item_genres,
            item_year=np.concatenate([[0], year_codes]), year_vocab_size=len(year_vocab) + 1,
            genres=tuple(data.genres))


class RankingModel(tfrs.models.Model):
    """Scores (user, item) pairs; trained with a TFRS Ranking task.

    ``task="rating"`` regresses the rating (MSE loss, RMSE metric); ``task="binary"``
    predicts rating >= threshold (binary cross-entropy, AUC metric). ``call`` returns the
    score: the predicted rating, or the logit for the binary task.
    """

    def __init__(self, config: ModelConfig, tables: FeatureTables, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.tables = tables
        dim = config.embedding_dim
        ids = dict(dim=dim, oov_buckets=config.oov_buckets,
                   init_scale=config.embedding_init_scale, l2=config.embedding_l2)
        self.user_embedding = IdEmbedding(
            vocabulary(tables.user_ids, tables.user_counts, config.min_id_count),
            name="user_id", **ids)
        self.item_embedding = IdEmbedding(
            vocabulary(tables.item_ids, tables.item_counts, config.min_id_count),
            name="item_id", **ids)
        self.user_row = keras.layers.IntegerLookup(vocabulary=tables.user_ids,
                                                   num_oov_indices=1, name="user_row")
        self.item_row = keras.layers.IntegerLookup(vocabulary=tables.item_ids,
                                                   num_oov_indices=1, name="item_row")
        self.user_codes = tf.constant(tables.user_codes)
        self.item_genres = tf.constant(tables.item_genres)
        self.item_year = tf.constant(tables.item_year)
        self.user_feature_lookups = [
            keras.layers.StringLookup(vocabulary=list(vocab), num_oov_indices=1,
                                      name=f"user_vocab_{i}")
            for i, vocab in enumerate(tables.user_vocabs)]
        self.user_feature_embeddings = [
            keras.layers.Embedding(size, dim, name=f"user_feature_{i}")
            for i, size in enumerate(tables.user_vocab_sizes)]
        self.genre_embedding = MultiHotEmbedding(len(tables.genres), dim, name="genres")
        self.year_embedding = keras.layers.Embedding(tables.year_vocab_size, dim, name="year")
        self.tower = DeepCrossTower(config.cross_layers, config.deep_layers, config.activation,
                                    config.smelu_beta, config.layer_norm,
                                    gsmelu_learn=config.gsmelu_learn,
                                    gsmelu_per_unit=config.gsmelu_per_unit, name="tower")
        # Per-example losses, averaged in compute_loss with tf.nn.compute_average_loss: the
        # mean over the batch on one machine, and the right scaling under a distribution
        # strategy (which rejects Keras' default SUM_OVER_BATCH_SIZE reduction in a task).
        none = keras.losses.Reduction.NONE
        if config.task == "rating":
            self.example_loss = keras.losses.MeanSquaredError(reduction=none)
            self.task = tfrs.tasks.Ranking(
                loss=self.example_loss,
                metrics=[keras.metrics.RootMeanSquaredError(name="rmse")])
        else:
            self.example_loss = keras.losses.BinaryCrossentropy(from_logits=True,
                                                                reduction=none)
            self.task = tfrs.tasks.Ranking(
                loss=self.example_loss,
                metrics=[keras.metrics.AUC(from_logits=True, name="auc"),
                         keras.metrics.BinaryCrossentropy(from_logits=True, name="log_loss")])

    def encode_user_features(self, features: Mapping[str, tf.Tensor]) -> tf.Tensor:
        """Raw user features by name (strings; age int64) -> codes [..., 4] like
        ``user_codes`` (columns ``USER_CODE_COLUMNS``)."""
        gender_vocab, occupation_vocab, zip_vocab = self.user_feature_lookups
        age_bucket = tf.raw_ops.Bucketize(input=tf.cast(features["age"], tf.int64),
                                          boundaries=[float(b) for b in AGE_BUCKETS])
        codes = {"gender": gender_vocab(features["gender"]),
                 "occupation": occupation_vocab(features["occupation"]),
                 "age": tf.cast(age_bucket, tf.int64) + 1,
                 "zip": zip_vocab(tf.strings.substr(features["zip"], 0, 1))}
        return tf.stack([codes[name] for name in USER_CODE_COLUMNS], axis=-1)

    def features(self, user_id: tf.Tensor, item_id: tf.Tensor,
                 user_codes: tf.Tensor | None = None) -> tf.Tensor:
        """Concatenated embeddings of the ids and their side features.

        Side features are looked up by id unless ``user_codes`` (from
        :meth:`encode_user_features`) supplies the user's.
        """
        item_row = self.item_row(item_id)
        codes = (tf.gather(self.user_codes, self.user_row(user_id)) if user_codes is None
                 else tf.cast(user_codes, tf.int64))
        parts = [self.user_embedding(user_id), self.item_embedding(item_id),
                 self.genre_embedding(tf.gather(self.item_genres, item_row)),
                 self.year_embedding(tf.gather(self.item_year, item_row))]
        parts += [emb(codes[..., j]) for j, emb in enumerate(self.user_feature_embeddings)]
        return tf.concat(parts, axis=-1)

    def call(self, inputs: dict[str, tf.Tensor]) -> tf.Tensor:
        """{"user_id": [B], "item_id": [B], optional "user_codes": [B, 4]} -> score [B, 1]."""
        return self.tower(self.features(inputs["user_id"], inputs["item_id"],
                                        inputs.get("user_codes")))

    def get_config(self) -> dict[str, Any]:
        """Only the layer basics: a trained model is restored from its SavedModel or a
        checkpoint into a model built from the experiment config, never from this config
        (its tables are data). Defining it keeps Keras from warning on every save."""
        return {"name": self.name, "trainable": self.trainable}

    def label(self, rating: tf.Tensor) -> tf.Tensor:
        """The training target for a rating, per task."""
        if self.config.task == "binary":
            return tf.cast(rating >= self.config.binary_threshold, tf.float32)
        return rating

    def compute_loss(self, inputs: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        """TFRS loss of a batch holding user_id, item_id and rating."""
        scores = self(inputs, training=training)
        labels = tf.reshape(self.label(inputs["rating"]), tf.shape(scores))
        return tf.nn.compute_average_loss(self.task(labels=labels, predictions=scores))
