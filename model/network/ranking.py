"""The TFRS ranking model: the schema's features (:class:`FeatureEncoder`) into a DCN-v2
tower with SmeLU (or another activation).

``call`` takes the raw ids and context features by name and returns the score: the
predicted rating, or the logit for the binary task. User and item facts are looked up by id
inside the model; ``call(inputs, facts=...)`` uses given facts instead (a new user).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import tensorflow as tf
import tensorflow_recommenders as tfrs
import tf_keras as keras

from steadyrank.model.config import ModelConfig
from steadyrank.model.data.batches import LABEL
from steadyrank.model.data.stats import DataStats
from steadyrank.model.network.features import FeatureEncoder
from steadyrank.model.network.layers import DeepCrossTower
from steadyrank.model.schema import Schema


class RankingModel(tfrs.models.Model):
    """Scores rows of the schema's features; trained with a TFRS Ranking task.

    ``task="rating"`` regresses the label (MSE loss, RMSE metric); ``task="binary"``
    predicts a 0/1 label (binary cross-entropy, AUC metric).
    """

    def __init__(self, config: ModelConfig, schema: Schema, stats: DataStats,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.schema = schema
        self.task_name = schema.label.task
        self.encoder = FeatureEncoder(schema, stats, config, name="features")
        self.tower = DeepCrossTower(config.cross_layers, config.deep_layers, config.activation,
                                    config.smelu_beta, config.layer_norm,
                                    gsmelu_learn=config.gsmelu_learn,
                                    gsmelu_per_unit=config.gsmelu_per_unit, name="tower")
        # Per-example losses, averaged in compute_loss with tf.nn.compute_average_loss: the
        # mean over the batch on one machine, and the right scaling under a distribution
        # strategy (which rejects Keras' default SUM_OVER_BATCH_SIZE reduction in a task).
        none = keras.losses.Reduction.NONE
        if self.task_name == "rating":
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

    def call(self, inputs: Mapping[str, tf.Tensor], facts: Mapping[str, tf.Tensor] | None = None,
             training: bool | None = None) -> tf.Tensor:
        """The ids and context features by name (and, optionally, facts) -> score [B, 1]."""
        return self.tower(self.encoder(inputs, facts, training=training))

    def get_config(self) -> dict[str, Any]:
        """Only the layer basics: a trained model is restored from its SavedModel or a
        checkpoint into a model built from the experiment config, never from this config
        (its tables are data). Defining it keeps Keras from warning on every save."""
        return {"name": self.name, "trainable": self.trainable}

    def labels_of(self, inputs: Mapping[str, tf.Tensor], scores: tf.Tensor) -> tf.Tensor:
        """A batch's labels, shaped like the scores."""
        return tf.reshape(tf.cast(inputs[LABEL], tf.float32), tf.shape(scores))

    def compute_loss(self, inputs: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        """TFRS loss of a batch of inputs with their labels (key ``sr_label``)."""
        scores = self(inputs, training=training)
        return tf.nn.compute_average_loss(self.task(labels=self.labels_of(inputs, scores),
                                                    predictions=scores))
