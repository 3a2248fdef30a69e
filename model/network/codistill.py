"""Co-distillation (online distillation, Anil et al. 2018): two towers trained together.

Each tower has its label loss plus ``weight`` times its distance to the other tower's
prediction, with the gradient stopped through the other's prediction, so the two pull
towards a shared solution while each still learns from the labels. Training costs two
towers; tower A alone is exported, so serving costs one.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf
import tensorflow_recommenders as tfrs

from steadyrank.model.config import ModelConfig
from steadyrank.model.data.stats import DataStats
from steadyrank.model.network.ranking import RankingModel
from steadyrank.model.schema import Schema


class CoDistillation(tfrs.models.Model):
    """Towers A and B of one architecture; ``call`` is tower A's score."""

    def __init__(self, config: ModelConfig, schema: Schema, stats: DataStats, weight: float,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if weight <= 0:
            raise ValueError(f"co-distillation weight must be > 0, got {weight}")
        self.weight = float(weight)
        self.tower_a = RankingModel(config, schema, stats, name="tower_a")
        self.tower_b = RankingModel(config, schema, stats, name="tower_b")

    def call(self, inputs: dict[str, tf.Tensor]) -> tf.Tensor:
        """Tower A's score, the one that is exported."""
        return self.tower_a(inputs)

    def distance(self, scores: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
        """Per-example distance to the other tower's (stopped) scores: squared error of
        ratings, or cross-entropy to the other's click probability for the binary task."""
        target = tf.stop_gradient(target)
        if self.tower_a.task_name == "binary":
            return tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.sigmoid(target),
                                                           logits=scores)
        return tf.square(scores - target)

    def compute_loss(self, inputs: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        """Both towers' label losses plus the weighted distances between them."""
        a = self.tower_a(inputs, training=training)
        b = self.tower_b(inputs, training=training)
        labels = self.tower_a.labels_of(inputs, a)
        per_example = (self.tower_a.task(labels=labels, predictions=a)
                       + self.tower_b.task(labels=labels, predictions=b)
                       + self.weight * tf.reshape(self.distance(a, b) + self.distance(b, a),
                                                  [-1]))
        return tf.nn.compute_average_loss(per_example)
