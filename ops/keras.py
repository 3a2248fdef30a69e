"""Keras integration (tf-keras): the ``SmeLU`` and ``GSmeLU`` layers and the ``"smelu"``
activation name."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import tensorflow as tf
import tf_keras as keras

from steadyrank.ops.gsmelu_op import PARAM_NAMES, check_params, gsmelu
from steadyrank.ops.smelu_op import check_beta, smelu


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


@keras.saving.register_keras_serializable(package="steadyrank", name="MinValue")
class MinValue(keras.constraints.Constraint):
    """Clips a weight to ``>= min_value`` after every update (keeps alpha + beta > 0)."""

    def __init__(self, min_value: float) -> None:
        self.min_value = float(min_value)

    def __call__(self, w: tf.Tensor) -> tf.Tensor:
        """The clipped weight."""
        return tf.maximum(w, tf.cast(self.min_value, w.dtype))

    def get_config(self) -> dict[str, Any]:
        """Constraint config."""
        return {"min_value": self.min_value}


@keras.saving.register_keras_serializable(package="steadyrank", name="GSmeLU")
class GSmeLU(keras.layers.Layer):
    """Generalized SmeLU with learnable parameters, initialised to exactly SmeLU(beta).

    Args:
      beta: initial right half-width of the transition region.
      alpha: initial left half-width; None ties alpha to beta (one learned width, SmeLU's
        symmetric shape) unless ``"alpha"`` is in ``learn``, where it starts at beta.
      slope_left, slope_right, offset: initial values (SmeLU: 0, 1, 0).
      per_unit: one value of each learned parameter per unit (last axis), else one per layer.
      learn: which of alpha, beta, slope_left, slope_right, offset are trained; the rest are
        constants. (Keras' own ``trainable`` flag still freezes the whole layer.)
      min_width: learned alpha and beta are each kept >= min_width / 2, so alpha + beta > 0.

    >>> layer = GSmeLU(beta=0.5, per_unit=True)  # learns 1 beta per unit; alpha tied to it
    """

    def __init__(self, beta: float = 1.0, alpha: float | None = None, slope_left: float = 0.0,
                 slope_right: float = 1.0, offset: float = 0.0, per_unit: bool = False,
                 learn: Iterable[str] = ("beta",), min_width: float = 1e-3,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.learn = tuple(learn)
        unknown = sorted(set(self.learn) - set(PARAM_NAMES))
        if unknown:
            raise ValueError(f"GSmeLU learn: unknown parameter(s) {', '.join(unknown)}; "
                             f"known: {', '.join(PARAM_NAMES)}")
        self.tied_alpha = alpha is None and "alpha" not in self.learn
        self.init = {"alpha": float(beta if alpha is None else alpha), "beta": float(beta),
                     "slope_left": float(slope_left), "slope_right": float(slope_right),
                     "offset": float(offset)}
        check_params(*(self.init[n] for n in PARAM_NAMES))
        if not min_width > 0:
            raise ValueError(f"GSmeLU min_width must be > 0, got {min_width!r}")
        self.per_unit = bool(per_unit)
        self.min_width = float(min_width)
        self.supports_masking = True
        self._params: dict[str, Any] = {}

    def build(self, input_shape: Any) -> None:
        """Creates the learned parameters (one per layer, or one per unit)."""
        units = tf.TensorShape(input_shape)[-1] if self.per_unit else None
        if self.per_unit and units is None:
            raise ValueError("GSmeLU(per_unit=True) needs a known last axis, got input shape "
                             f"{input_shape}")
        shape = (units,) if self.per_unit else ()
        for name in PARAM_NAMES:
            if name not in self.learn:
                continue
            bounded = name in ("alpha", "beta")
            self._params[name] = self.add_weight(
                name=name, shape=shape, dtype=self.dtype,
                initializer=keras.initializers.Constant(self.init[name]),
                constraint=MinValue(self.min_width / 2) if bounded else None, trainable=True)
        super().build(input_shape)

    def parameters(self) -> dict[str, Any]:
        """The current parameters: variables for learned ones, floats for the rest."""
        out = {n: self._params.get(n, self.init[n]) for n in PARAM_NAMES}
        if self.tied_alpha:
            out["alpha"] = out["beta"]
        return out

    def call(self, inputs: Any) -> Any:
        """Applies g-SmeLU elementwise with the current parameters."""
        params = self.parameters()
        return gsmelu(inputs, *(params[n] for n in PARAM_NAMES))

    def compute_output_shape(self, input_shape: Any) -> Any:
        """Elementwise: the output shape is the input shape."""
        return input_shape

    def get_config(self) -> dict[str, Any]:
        """Layer config, enough to rebuild the layer with ``from_config``."""
        return {**super().get_config(), "beta": self.init["beta"],
                "alpha": None if self.tied_alpha else self.init["alpha"],
                "slope_left": self.init["slope_left"], "slope_right": self.init["slope_right"],
                "offset": self.init["offset"], "per_unit": self.per_unit,
                "learn": list(self.learn), "min_width": self.min_width}


def register_activation() -> None:
    """Makes the plain string ``"smelu"`` resolve to SmeLU wherever Keras takes an activation."""
    keras.utils.get_custom_objects()["smelu"] = smelu_activation


register_activation()
