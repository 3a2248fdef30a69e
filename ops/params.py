"""Checks of SmeLU parameters, in plain Python (no TensorFlow: config parsing uses them)."""

from __future__ import annotations

import math
from numbers import Real

FLOAT32_MAX = 3.4028234663852886e38
FLOAT32_TINY = 1.401298464324817e-45  # the smallest positive float32 (subnormal)


def check_beta(beta: object) -> float:
    """Returns ``beta`` as a float, or raises ValueError naming the bad value.

    beta must be a finite real number > 0. The SmeLU op stores it as a float32 attr, so a
    beta that underflows float32 to 0 or overflows it to inf is rejected too.
    """
    if isinstance(beta, bool) or not isinstance(beta, Real):
        raise ValueError(f"SmeLU beta must be a finite number > 0, got {beta!r}")
    value = float(beta)
    if not math.isfinite(value) or value <= 0 or value > FLOAT32_MAX or value < FLOAT32_TINY / 2:
        raise ValueError(f"SmeLU beta must be a finite number > 0, got {beta!r}")
    return value
