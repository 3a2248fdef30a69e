"""Keras integration: the ``SmeLU`` layer and the ``"smelu"`` activation name (tf-keras)."""

from __future__ import annotations

from typing import Any

import tf_keras as keras

from steadyrank.ops.smelu import check_beta, smelu


@keras.saving.register_keras_serializable(package="steadyrank", name="smelu")
def smelu_activation(x: Any) -> Any:
    """SmeLU with beta = 1, as a Keras activation (``activation="smelu"``)."""
    return smelu(x, beta=1.0)


@keras.saving.register_keras_serializable(package="steadyrank", name="SmeLU")
class SmeLU(keras.layers.Layer):
    """Smooth ReLU activation layer with half-width ``beta``.

    >>> layer = SmeLU(beta=0.5)
    >>> y = layer(tf.constant([-1.0, 0.0, 1.0]))  # [0, 0.125, 1]
    """

    def __init__(self, beta: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.beta = check_beta(beta)
        self.supports_masking = True

    def call(self, inputs: Any) -> Any:
        """Applies SmeLU elementwise."""
        return smelu(inputs, beta=self.beta)

    def compute_output_shape(self, input_shape: Any) -> Any:
        """Elementwise: the output shape is the input shape."""
        return input_shape

    def get_config(self) -> dict[str, Any]:
        """Layer config, enough to rebuild the layer with ``from_config``."""
        return {**super().get_config(), "beta": self.beta}


def register_activation() -> None:
    """Makes the plain string ``"smelu"`` resolve to SmeLU wherever Keras takes an activation."""
    keras.utils.get_custom_objects()["smelu"] = smelu_activation


register_activation()
