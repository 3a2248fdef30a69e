"""Keras layers of the ranking model; each is serializable through ``get_config``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs
import tf_keras as keras

from steadyrank.ops import GSmeLU, SmeLU

PACKAGE = "steadyrank"


def make_activation(name: str, smelu_beta: float = 1.0,
                    gsmelu_learn: Sequence[str] = ("beta",),
                    gsmelu_per_unit: bool = False) -> keras.layers.Layer:
    """An activation layer by config name: relu, smelu (with beta), gsmelu (learnable,
    starting as SmeLU(beta)), gelu, swish, softplus."""
    if name == "smelu":
        return SmeLU(beta=smelu_beta)
    if name == "gsmelu":
        return GSmeLU(beta=smelu_beta, learn=tuple(gsmelu_learn), per_unit=gsmelu_per_unit)
    if name in ("relu", "gelu", "swish", "softplus"):
        return keras.layers.Activation(name)
    raise ValueError(f"unknown activation {name!r}; expected relu, smelu, gsmelu, gelu, swish "
                     "or softplus")


@keras.saving.register_keras_serializable(package=PACKAGE)
class IdEmbedding(keras.layers.Layer):
    """Vocabulary lookup (with out-of-vocabulary buckets) followed by an embedding table.

    ``init_scale``: rows start uniform in [-init_scale, init_scale] (Keras' default is 0.05);
    ``l2``: an L2 penalty on the looked-up rows, added to the model's losses.
    """

    def __init__(self, vocabulary: Sequence[Any], dim: int, oov_buckets: int = 1,
                 init_scale: float = 0.05, l2: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # A numpy array, not a list: Keras wraps list attributes for tracking and walks them
        # on every save, which takes minutes for a vocabulary of millions of ids.
        self.vocabulary = np.asarray(vocabulary)
        self.dim = int(dim)
        self.oov_buckets = int(oov_buckets)
        self.init_scale = float(init_scale)
        self.l2 = float(l2)
        is_str = self.vocabulary.dtype.kind in "USO"
        lookup = keras.layers.StringLookup if is_str else keras.layers.IntegerLookup
        self.lookup = lookup(vocabulary=self.vocabulary, num_oov_indices=self.oov_buckets,
                             name="lookup")
        self.embedding = keras.layers.Embedding(
            len(self.vocabulary) + self.oov_buckets, self.dim, name="embedding",
            embeddings_initializer=keras.initializers.RandomUniform(-self.init_scale,
                                                                   self.init_scale))

    def call(self, ids: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        """ids [...] -> embeddings [..., dim]."""
        rows = self.embedding(self.lookup(ids))
        if self.l2 > 0 and training:
            # On the rows a batch uses (as sparse-embedding L2 is applied in practice), not
            # the whole table: rare ids are pulled to 0 only when they are seen.
            self.add_loss(self.l2 * tf.reduce_mean(tf.reduce_sum(tf.square(rows), axis=-1)))
        return rows

    def get_config(self) -> dict[str, Any]:
        """Layer config."""
        return {**super().get_config(), "vocabulary": self.vocabulary.tolist(), "dim": self.dim,
                "oov_buckets": self.oov_buckets, "init_scale": self.init_scale, "l2": self.l2}


@keras.saving.register_keras_serializable(package=PACKAGE)
class MultiHotEmbedding(keras.layers.Layer):
    """Mean-pooled embedding of a multi-hot feature (e.g. an item's genres)."""

    def __init__(self, num_values: int, dim: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_values = int(num_values)
        self.dim = int(dim)
        self.table = self.add_weight(name="table", shape=(self.num_values, self.dim),
                                     initializer="uniform")

    def call(self, multi_hot: tf.Tensor) -> tf.Tensor:
        """multi_hot [..., num_values] (0/1) -> mean of the set values' embeddings."""
        weights = tf.cast(multi_hot, self.table.dtype)
        count = tf.maximum(tf.reduce_sum(weights, axis=-1, keepdims=True), 1.0)
        return tf.matmul(weights, self.table) / count

    def get_config(self) -> dict[str, Any]:
        """Layer config."""
        return {**super().get_config(), "num_values": self.num_values, "dim": self.dim}


@keras.saving.register_keras_serializable(package=PACKAGE)
class DeepCrossTower(keras.layers.Layer):
    """DCN-v2 in parallel form: a cross network beside a deep MLP, then a linear score."""

    def __init__(self, cross_layers: int = 1, deep_layers: Sequence[int] = (64, 32),
                 activation: str = "smelu", smelu_beta: float = 1.0,
                 layer_norm: bool = False, gsmelu_learn: Sequence[str] = ("beta",),
                 gsmelu_per_unit: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cross_layers = int(cross_layers)
        self.deep_layers = [int(u) for u in deep_layers]
        self.activation = activation
        self.smelu_beta = float(smelu_beta)
        self.layer_norm = bool(layer_norm)
        self.gsmelu_learn = [str(p) for p in gsmelu_learn]
        self.gsmelu_per_unit = bool(gsmelu_per_unit)
        self.crosses = [tfrs.layers.dcn.Cross(name=f"cross_{i}")
                        for i in range(self.cross_layers)]
        self.deep = []
        for i, units in enumerate(self.deep_layers):
            self.deep.append(keras.layers.Dense(units, name=f"dense_{i}"))
            if self.layer_norm:
                self.deep.append(keras.layers.LayerNormalization(name=f"norm_{i}"))
            self.deep.append(make_activation(activation, smelu_beta, self.gsmelu_learn,
                                             self.gsmelu_per_unit))
        self.score = keras.layers.Dense(1, name="score")

    def call(self, x: tf.Tensor) -> tf.Tensor:
        """x [batch, features] -> score [batch, 1]."""
        cross = x
        for layer in self.crosses:
            cross = layer(x, cross)
        deep = x
        for layer in self.deep:
            deep = layer(deep)
        parts = [deep] + ([cross] if self.crosses else [])
        return self.score(tf.concat(parts, axis=-1))

    def get_config(self) -> dict[str, Any]:
        """Layer config."""
        return {**super().get_config(), "cross_layers": self.cross_layers,
                "deep_layers": self.deep_layers, "activation": self.activation,
                "smelu_beta": self.smelu_beta, "layer_norm": self.layer_norm,
                "gsmelu_learn": self.gsmelu_learn, "gsmelu_per_unit": self.gsmelu_per_unit}
