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
class EmbeddingTable(keras.layers.Layer):
    """One embedding table and how values find their row: a vocabulary lookup (with
    ``oov_buckets`` out-of-vocabulary rows first, as Keras' lookups number them) or
    ``hash_buckets`` rows chosen by a hash of the value.

    ``index`` maps values (int64 or string, any shape) to rows; ``call`` maps rows to
    embeddings. ``init_kind`` and ``init_scale``: rows start uniform in [-init_scale,
    init_scale] (``uniform``), normal with standard deviation init_scale (``normal``) or at
    zero (``zeros``); ``l2``: an L2 penalty on the rows a batch uses, added to the model's
    losses.
    """

    def __init__(self, vocabulary: Sequence[Any] | np.ndarray, dim: int,
                 dtype_name: str = "int64", oov_buckets: int = 1, hash_buckets: int = 0,
                 init_scale: float = 0.05, l2: float = 0.0, init_kind: str = "uniform",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # A numpy array, not a list: Keras wraps list attributes for tracking and walks them
        # on every save, which takes minutes for a vocabulary of millions of values.
        self.vocabulary = np.asarray(vocabulary, object if dtype_name == "string" else np.int64)
        self.dim = int(dim)
        self.dtype_name = dtype_name
        self.oov_buckets = int(oov_buckets)
        self.hash_buckets = int(hash_buckets)
        self.init_scale = float(init_scale)
        self.init_kind = init_kind
        self.l2 = float(l2)
        if self.hash_buckets:
            self.lookup = None
            self.rows = self.hash_buckets
        else:
            lookup = (keras.layers.StringLookup if dtype_name == "string"
                      else keras.layers.IntegerLookup)
            self.lookup = lookup(vocabulary=self.vocabulary if len(self.vocabulary) else None,
                                 num_oov_indices=self.oov_buckets, name="lookup")
            self.rows = len(self.vocabulary) + self.oov_buckets
        self.embedding = keras.layers.Embedding(
            self.rows, self.dim, name="embedding",
            embeddings_initializer=table_initializer(self.init_kind, self.init_scale))

    def index(self, values: tf.Tensor) -> tf.Tensor:
        """The row of each value (int64, same shape)."""
        if self.hash_buckets:
            if self.dtype_name == "string":
                return tf.strings.to_hash_bucket_fast(values, self.hash_buckets)
            return tf.math.floormod(tf.cast(values, tf.int64), self.hash_buckets)
        return tf.cast(self.lookup(values), tf.int64)

    def call(self, rows: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        """rows [...] -> embeddings [..., dim]."""
        found = self.embedding(rows)
        if self.l2 > 0 and training:
            # On the rows a batch uses (as sparse-embedding L2 is applied in practice), not
            # the whole table: rare values are pulled to 0 only when they are seen.
            self.add_loss(self.l2 * tf.reduce_mean(tf.reduce_sum(tf.square(found), axis=-1)))
        return found

    def get_config(self) -> dict[str, Any]:
        """Layer config."""
        return {**super().get_config(), "vocabulary": self.vocabulary.tolist(),
                "dim": self.dim, "dtype_name": self.dtype_name,
                "oov_buckets": self.oov_buckets, "hash_buckets": self.hash_buckets,
                "init_scale": self.init_scale, "l2": self.l2, "init_kind": self.init_kind}


def table_initializer(kind: str, scale: float) -> keras.initializers.Initializer:
    """An embedding table's initializer: ``uniform`` in [-scale, scale], ``normal`` with
    standard deviation ``scale``, or ``zeros``."""
    if kind == "uniform":
        return keras.initializers.RandomUniform(-scale, scale)
    if kind == "normal":
        return keras.initializers.RandomNormal(0.0, scale)
    if kind == "zeros":
        return keras.initializers.Zeros()
    raise ValueError(f"unknown embedding init {kind!r}; expected uniform, normal or zeros")


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
