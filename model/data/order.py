"""The order training rows are visited in each epoch: full reshuffles, or time order with a
bounded shuffle, as streaming production training sees its data.

The blog behind SmeLU: smooth activations help most "with equal initialization, moderate
shuffling of training examples, and normalization of hidden layer outputs ... very aggressive
data shuffling, however, loses this advantage". ``full`` is aggressive; ``window:N`` and
``time`` are the moderate regimes.
"""

from __future__ import annotations

import numpy as np

from steadyrank.model.config import parse_shuffle


def epoch_order(timestamps: np.ndarray, shuffle: str, seed: int, epoch: int) -> np.ndarray:
    """Row indices in the order epoch ``epoch`` visits them, for the order seed ``seed``.

    - ``full``: a permutation drawn from (seed, epoch);
    - ``time``: by timestamp (ties by row), the same every epoch and for every seed;
    - ``window:N``: by time rank plus a uniform draw in [0, N) from (seed, epoch), so each
      row moves fewer than N places, like a shuffle buffer of N rows over a stream.
    """
    kind, window = parse_shuffle(shuffle)
    n = len(timestamps)
    if kind == "full":
        return np.random.default_rng([seed, epoch]).permutation(n)
    by_time = np.argsort(timestamps, kind="stable")
    if kind == "time":
        return by_time
    rank = np.empty(n, np.float64)
    rank[by_time] = np.arange(n)
    jitter = np.random.default_rng([seed, epoch]).uniform(0.0, window, n)
    return np.argsort(rank + jitter, kind="stable")
