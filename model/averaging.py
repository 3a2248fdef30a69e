"""Weight averaging: Adam with an exponential moving average (EMA) of the weights.

tf-keras' optimizers keep the average (``use_ema``), but ``fit`` swaps it into the model at
the end of every call, and training here calls ``fit`` once per epoch: the run would go on
from the averaged weights each epoch. This optimizer swaps only when asked, once, after the
last epoch; the averages live in the optimizer, so checkpoints (and resumes) carry them.

The momentum warms up as TensorFlow's ExponentialMovingAverage does with ``num_updates``:
``min(M, (1 + t) / (10 + t))`` at step t, so the average forgets the random initial weights
instead of keeping ``M ** steps`` of them (0.999 ** 1,565 steps still holds 21% of the init).
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf
import tf_keras as keras


class AveragingAdam(keras.optimizers.Adam):
    """Adam plus a warmed-up EMA of the weights, swapped in by :meth:`swap_in_average`."""

    def __init__(self, learning_rate: float, momentum: float, **kwargs: Any) -> None:
        super().__init__(learning_rate, use_ema=True, ema_momentum=momentum, **kwargs)
        self.target_momentum = float(momentum)
        self._swap_allowed = False

    def _update_model_variables_moving_average(self, var_list: list) -> None:
        step = tf.cast(self.iterations, tf.float32)
        target = self.target_momentum
        self.ema_momentum = tf.minimum(target, (1.0 + step) / (10.0 + step))
        try:
            super()._update_model_variables_moving_average(var_list)
        finally:
            self.ema_momentum = target

    def finalize_variable_values(self, var_list: list) -> None:
        """No-op inside ``fit``; the swap happens once, in :meth:`swap_in_average`."""
        if self._swap_allowed:
            super().finalize_variable_values(var_list)

    def averages(self, var_list: list) -> list[tf.Variable]:
        """The moving averages of ``var_list`` (built after the first step)."""
        return [self._model_variables_moving_average[self._index_dict[self._var_key(v)]]
                for v in var_list]

    def swap_in_average(self, var_list: list) -> None:
        """Overwrites the model's weights with their averages (after the last epoch)."""
        self._swap_allowed = True
        try:
            self.finalize_variable_values(var_list)
        finally:
            self._swap_allowed = False


def make_optimizer(learning_rate: float, averaging_momentum: float = 0.0,
                   clip_norm: float = 0.0) -> keras.optimizers.Optimizer:
    """Adam, averaging the weights when ``averaging_momentum`` > 0 and clipping each step's
    gradients to the global norm ``clip_norm`` when > 0."""
    clip = {"global_clipnorm": clip_norm} if clip_norm > 0 else {}
    if averaging_momentum > 0:
        return AveragingAdam(learning_rate, averaging_momentum, **clip)
    return keras.optimizers.Adam(learning_rate, **clip)
