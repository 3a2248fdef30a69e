"""Reproducibility metrics between two models' predictions (shared by compare and the monitor).

Definitions (Shamir and Lin, 2022, and Google's Rules of ML):

- relative PD = mean over examples of |p1 - p2| / ((|p1| + |p2|) / 2); an example where both
  predictions are 0 counts as 0 (no difference).
- absolute PD = mean over examples of |p1 - p2|.
- top-k swap rate = mean over requests of 1 - |topk(A) & topk(B)| / k. Ties in a score
  list are broken by candidate position (earlier first), so the result is deterministic.
- Kendall tau: tau-b rank correlation of two score lists over the same candidates.
"""

from __future__ import annotations

import numpy as np

__all__ = ["absolute_pd", "absolute_pd_per_example", "kendall_tau", "kendall_tau_rows",
           "relative_pd", "relative_pd_per_example", "topk_indices", "topk_swap",
           "topk_swap_rate", "SWAP_KS", "swap_key", "PAIR_KEYS"]

SWAP_KS = (1, 5, 10)  # the k of every top-k swap rate, offline and live


def swap_key(k: int) -> str:
    """The name of the top-k swap rate in every record: a report, a manifest's offline
    numbers, the churn gate and the live monitor's values (``top10_swap_rate``)."""
    return f"top{k}_swap_rate"


# The reproducibility measures of a pair of models, by name, in the order reports list them.
PAIR_KEYS = ("relative_pd", "absolute_pd", *(swap_key(k) for k in SWAP_KS), "kendall_tau")


def _pair(p1: np.ndarray, p2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(p1, np.float64)
    b = np.asarray(p2, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"prediction shapes differ: {a.shape} vs {b.shape}")
    if a.size == 0:
        raise ValueError("no predictions to compare")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("predictions must be finite")
    return a, b


def relative_pd_per_example(p1: np.ndarray, p2: np.ndarray) -> np.ndarray:
    """|p1 - p2| / ((|p1| + |p2|) / 2) for each example (0 where both are 0)."""
    a, b = _pair(p1, p2)
    scale = (np.abs(a) + np.abs(b)) / 2
    diff = np.abs(a - b)
    return np.divide(diff, scale, out=np.zeros_like(diff), where=scale > 0)


def relative_pd(p1: np.ndarray, p2: np.ndarray) -> float:
    """Relative prediction difference: mean of :func:`relative_pd_per_example`."""
    return float(relative_pd_per_example(p1, p2).mean())


def absolute_pd_per_example(p1: np.ndarray, p2: np.ndarray) -> np.ndarray:
    """|p1 - p2| for each example."""
    a, b = _pair(p1, p2)
    return np.abs(a - b)


def absolute_pd(p1: np.ndarray, p2: np.ndarray) -> float:
    """Absolute prediction difference: mean of :func:`absolute_pd_per_example`."""
    return float(absolute_pd_per_example(p1, p2).mean())


def topk_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores per row, best first; ties go to the earlier index."""
    scores = np.asarray(scores)
    n = scores.shape[-1]
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, {n}] (the number of candidates), got {k}")
    return np.argsort(-scores, axis=-1, kind="stable")[..., :k]


def topk_swap(scores_a: np.ndarray, scores_b: np.ndarray, k: int) -> np.ndarray:
    """Per request: 1 - |topk(A) & topk(B)| / k; inputs [requests, candidates] or [candidates]."""
    a, b = _pair(scores_a, scores_b)
    a2, b2 = np.atleast_2d(a), np.atleast_2d(b)
    top_a, top_b = topk_indices(a2, k), topk_indices(b2, k)
    overlap = (top_a[:, :, None] == top_b[:, None, :]).any(axis=2).sum(axis=1)
    swap = 1.0 - overlap / k
    return swap if a.ndim > 1 else swap[:1]


def topk_swap_rate(scores_a: np.ndarray, scores_b: np.ndarray, k: int) -> float:
    """Top-k swap rate: mean of :func:`topk_swap` over requests."""
    return float(topk_swap(scores_a, scores_b, k).mean())


def kendall_tau(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall's tau-b between two score lists (1: same order, -1: reversed).

    Returns 0.0 when either list is constant (the correlation is undefined). SciPy's
    O(n log n) algorithm, so a full catalog of 10^5 items takes milliseconds (the pairwise
    definition would take minutes per list).
    """
    a, b = _pair(x, y)
    if a.ndim != 1:
        raise ValueError(f"kendall_tau takes 1-D score lists, got shape {a.shape}")
    if a.size < 2:
        return 0.0
    from scipy import stats  # here, not at import: the server's monitor never needs it

    tau = stats.kendalltau(a, b, variant="b").statistic
    return 0.0 if np.isnan(tau) else float(tau)


def kendall_tau_rows(x: np.ndarray, y: np.ndarray, max_elements: int = 4_000_000
                     ) -> np.ndarray:
    """:func:`kendall_tau` of each row of two [requests, candidates] score arrays.

    Vectorised over rows on the n(n-1)/2 candidate pairs while ``requests * pairs`` stays
    under ``max_elements`` (many short candidate lists, as the live monitor sees them); row
    by row beyond that. Differences are taken in the inputs' own float precision: the sign
    of a rounded float difference is the sign of the exact one.
    """
    x, y = np.asarray(x), np.asarray(y)
    _pair(x, y)  # shape and finiteness checks
    dtype = np.result_type(x, y)
    if not np.issubdtype(dtype, np.floating):
        dtype = np.float64
    a, b = np.asarray(x, dtype), np.asarray(y, dtype)
    if a.ndim != 2:
        raise ValueError(f"kendall_tau_rows takes 2-D score arrays, got shape {a.shape}")
    rows, n = a.shape
    pairs = n * (n - 1) // 2
    if rows * pairs > max_elements:
        return np.array([kendall_tau(a[r], b[r]) for r in range(rows)])
    first, second = np.triu_indices(n, 1)
    sign_a = np.sign(a[:, first] - a[:, second]).astype(np.int8)
    sign_b = np.sign(b[:, first] - b[:, second]).astype(np.int8)
    concordant = (sign_a * sign_b).sum(axis=1, dtype=np.int64)
    # Counted over unordered pairs: twice that is the ordered-pair count of _tau_b.
    ties_a = pairs - np.count_nonzero(sign_a, axis=1)
    ties_b = pairs - np.count_nonzero(sign_b, axis=1)
    return _tau_b(2.0 * concordant, 2.0 * ties_a + n, 2.0 * ties_b + n, n)


def _tau_b(concordant: np.ndarray, ties_a: np.ndarray, ties_b: np.ndarray, n: int
           ) -> np.ndarray:
    """tau-b from sign-product sums over all ordered pairs (each unordered pair counted twice,
    the n self-pairs counted as ties); 0 where a list is constant."""
    pairs = n * (n - 1)
    denom = np.sqrt((pairs - (ties_a - n)) * (pairs - (ties_b - n)))
    return np.divide(concordant, denom, out=np.zeros(np.shape(denom)), where=denom > 0)
