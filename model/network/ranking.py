"""The TFRS ranking model: id and side-feature embeddings into a DCN-v2 tower.

Inputs are ``user_id`` and ``item_id`` (int64). User side features (gender, occupation, age
bucket, zip prefix) and item side features (genres, multi-hot and mean-pooled; release year)
are looked up inside the model from tables built from the training data, so a served model
needs only the ids. Unknown ids fall into out-of-vocabulary buckets.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import tensorflow as tf
import tensorflow_recommenders as tfrs
import tf_keras as keras

from steadyrank.model.config import ModelConfig
from steadyrank.model.data.tables import AGE_BUCKETS, USER_CODE_COLUMNS, FeatureTables, vocabulary
from steadyrank.model.network.layers import DeepCrossTower, IdEmbedding, MultiHotEmbedding


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
