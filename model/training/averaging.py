"""Weight averaging: Adam with a running average of the weights, exponential or uniform.

tf-keras' optimizers keep the average (``use_ema``), but ``fit`` swaps it into the model at
the end of every call, and training here calls ``fit`` once per epoch: the run would go on
from the averaged weights each epoch. This optimizer swaps only when asked, once, after the
last epoch; the averages live in the optimizer, so checkpoints (and resumes) carry them.

The momentum warms up as TensorFlow's ExponentialMovingAverage does with ``num_updates``:
``min(M, (1 + t) / (10 + t))`` at step t, so the average forgets the random initial weights
instead of keeping ``M ** steps`` of them (0.999 ** 1,565 steps still holds 21% of the init).
The warm-up also caps the momentum: after 1,565 steps it is 0.994, so a short run's EMA
averages only its last ~170 steps whatever M says.

Polyak (tail) averaging is the uniform mean of the weights after each of the last steps,
from ``polyak_from`` on (Polyak and Juditsky 1992; "stochastic weight averaging" for the
tail of a run). It is the same update with momentum ``n / (n + 1)`` at the n-th averaged
step, and the average simply follows the weights before that step.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf
import tf_keras as keras


class AveragingAdam(keras.optimizers.Adam):
    """Adam plus an average of the weights, swapped in by :meth:`swap_in_average`.

    With ``polyak_from`` None the average is a warmed-up EMA with target ``momentum``;
    with ``polyak_from`` = s it is the uniform mean of the weights after steps s, s+1, ...
    (steps counted from 0), and ``momentum`` is unused.
    """

    def __init__(self, learning_rate: float, momentum: float = 0.999,
                 polyak_from: int | None = None, **kwargs: Any) -> None:
        super().__init__(learning_rate, use_ema=True, ema_momentum=momentum, **kwargs)
        self.target_momentum = float(momentum)
        self.polyak_from = polyak_from
        self._swap_allowed = False

    def _momentum(self, step: Any = None) -> tf.Tensor:
        """Step ``step``'s momentum (default: this step's; the update runs before
        ``iterations`` counts the step)."""
        step = tf.cast(self.iterations if step is None else step, tf.float32)
        if self.polyak_from is None:
            return tf.minimum(self.target_momentum, (1.0 + step) / (10.0 + step))
        averaged = step - float(self.polyak_from)  # steps already in the average
        return tf.maximum(0.0, averaged / (averaged + 1.0))

    def last_momentum(self) -> float | None:
        """The EMA momentum the last step used (below the target while warming up); None
        for Polyak averaging or before any step."""
        steps = int(self.iterations.numpy())
        if self.polyak_from is not None or steps < 1:
            return None
        return float(self._momentum(steps - 1))

    def _update_model_variables_moving_average(self, var_list: list) -> None:
        target = self.target_momentum
        self.ema_momentum = self._momentum()
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


def polyak_start(total_steps: int, fraction: float) -> int:
    """The first averaged step (from 0) when averaging the last ``fraction`` of
    ``total_steps``; at least the last step is averaged."""
    return max(0, min(total_steps - 1, total_steps - round(fraction * total_steps)))


Schedule = keras.optimizers.schedules.LearningRateSchedule


def learning_rate_schedule(learning_rate: float, decay: tuple[str, float],
                           total_steps: int) -> float | Schedule:
    """``learning_rate`` itself for ``("none", _)``; else a schedule that anneals it over
    ``total_steps`` steps, linearly or along a half cosine, to ``end`` times it, then stays."""
    kind, end = decay
    if kind == "none":
        return learning_rate
    if total_steps < 1:
        raise ValueError("a learning-rate decay needs the run's total step count")
    schedules = keras.optimizers.schedules
    if kind == "linear":
        return schedules.PolynomialDecay(learning_rate, total_steps,
                                         end_learning_rate=learning_rate * end, power=1.0)
    if kind == "cosine":
        return schedules.CosineDecay(learning_rate, total_steps, alpha=end)
    raise ValueError(f"unknown learning-rate decay {kind!r}")


def make_optimizer(learning_rate: float, averaging: tuple[str, float] = ("none", 0.0),
                   clip_norm: float = 0.0, total_steps: int = 0,
                   decay: tuple[str, float] = ("none", 1.0)) -> keras.optimizers.Optimizer:
    """Adam, clipping each step's gradients to the global norm ``clip_norm`` when > 0,
    annealing the learning rate over ``total_steps`` as ``decay`` says (see
    :func:`learning_rate_schedule`), and averaging the weights as ``averaging`` says:
    ``("ema", M)`` or ``("polyak", F)``, the uniform mean over the last fraction F of
    ``total_steps``."""
    clip = {"global_clipnorm": clip_norm} if clip_norm > 0 else {}
    learning_rate = learning_rate_schedule(learning_rate, decay, total_steps)
    kind, value = averaging
    if kind == "ema":
        return AveragingAdam(learning_rate, value, **clip)
    if kind == "polyak":
        if total_steps < 1:
            raise ValueError("polyak averaging needs the run's total step count")
        return AveragingAdam(learning_rate, polyak_from=polyak_start(total_steps, value),
                             **clip)
    return keras.optimizers.Adam(learning_rate, **clip)
