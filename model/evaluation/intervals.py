"""Bootstrap confidence intervals over replica pairs, and how many pairs an interval needs.

A report's figures are means over pairs of replicas, so their uncertainty comes from the
pairs: each interval resamples the pairs (with replacement, ``RESAMPLES`` times, seeded) and
takes the 2.5th and 97.5th percentiles of the statistic (the percentile bootstrap). A ratio
between two variants resamples the pairs of each variant independently (they are different
runs). With few pairs the bootstrap is too narrow (a resample of 3 values cannot vary as the
mean of 3 values does): :func:`pairs_needed` says how many a fair interval of a given width
needs, from the observed spread.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

RESAMPLES = 10_000
LEVEL = 0.95
SEED = 0
Z95 = 1.959963984540054  # the standard normal's 97.5th percentile


def _resampled_means(values: Sequence[float], rng: np.random.Generator,
                     resamples: int) -> np.ndarray:
    data = np.asarray(values, np.float64)
    if data.size == 0:
        raise ValueError("an interval needs at least one pair")
    picks = rng.integers(0, data.size, (resamples, data.size))
    return data[picks].mean(axis=1)


def _bounds(samples: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def mean_interval(values: Sequence[float], resamples: int = RESAMPLES, level: float = LEVEL,
                  seed: int = SEED) -> tuple[float, float]:
    """The percentile-bootstrap interval of the mean of ``values`` (one per pair)."""
    rng = np.random.default_rng(seed)
    return _bounds(_resampled_means(values, rng, resamples), level)


def ratio_interval(numerator: Sequence[float], denominator: Sequence[float],
                   resamples: int = RESAMPLES, level: float = LEVEL, seed: int = SEED
                   ) -> tuple[float, float]:
    """The interval of mean(numerator) / mean(denominator), the pairs of each resampled
    independently."""
    rng = np.random.default_rng(seed)
    top = _resampled_means(numerator, rng, resamples)
    bottom = _resampled_means(denominator, rng, resamples)
    return _bounds(top / bottom, level)


def difference_interval(first: Sequence[float], second: Sequence[float],
                        resamples: int = RESAMPLES, level: float = LEVEL, seed: int = SEED
                        ) -> tuple[float, float]:
    """The interval of mean(first) - mean(second), resampled independently."""
    rng = np.random.default_rng(seed)
    return _bounds(_resampled_means(first, rng, resamples)
                   - _resampled_means(second, rng, resamples), level)


def pairs_needed(values: Sequence[float], half_width: float) -> int | None:
    """Pairs for a 95% interval of the mean of ± ``half_width``, from the observed spread
    (normal approximation: n = (1.96 s / half_width)^2); None with fewer than 2 values."""
    data = np.asarray(values, np.float64)
    if data.size < 2 or half_width <= 0:
        return None
    spread = float(data.std(ddof=1))
    return max(2, math.ceil((Z95 * spread / half_width) ** 2))


def ratio_pairs_needed(numerator: Sequence[float], denominator: Sequence[float],
                       half_width: float) -> int | None:
    """Pairs per variant for a 95% interval of the ratio of means of ± ``half_width`` (delta
    method: the ratio's relative variance is the sum of the two means' relative variances);
    None with fewer than 2 values in either."""
    a, b = np.asarray(numerator, np.float64), np.asarray(denominator, np.float64)
    if a.size < 2 or b.size < 2 or half_width <= 0 or a.mean() == 0 or b.mean() == 0:
        return None
    ratio = a.mean() / b.mean()
    relative = (a.std(ddof=1) / a.mean()) ** 2 + (b.std(ddof=1) / b.mean()) ** 2
    return max(2, math.ceil((Z95 * abs(ratio) / half_width) ** 2 * relative))
