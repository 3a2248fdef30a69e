"""The reproducibility of two models' answers to the same requests, as Prometheus
histograms: what the server's built-in monitor (shadow scoring, version churn) and
``steadyrank monitor`` (any TF Serving fleet) both record, with the functions
``steadyrank compare`` uses (:mod:`steadyrank.model.measures.metrics`).

Each observation is one request's value: relative and absolute PD (the mean over its rows),
and, when the rows are one user's candidates, the top-k swap rate by k and Kendall tau.
"""

from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry, Histogram

from steadyrank.model.measures import metrics as repro

KENDALL_MAX_CANDIDATES = 2000  # tau is O(n^2); larger requests skip it
PD_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15,
              0.2, 0.3, 0.5, 1.0, 2.0)
SWAP_BUCKETS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
# No negative bound: the client then omits _sum (OpenMetrics); a tau <= 0 lands in le="0".
TAU_BUCKETS = (0.0, 0.25, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98, 0.99, 1.0)
PAIR_LABELS = ["model", "version_a", "version_b"]
CHURN_LABELS = ["model", "version_old", "version_new"]


class PairHistograms:
    """Per-request-pair reproducibility histograms of two models, under one name prefix.

    ``{prefix}_prediction_difference_relative`` and ``_absolute``, ``{prefix}_topk_swap_rate``
    (by ``k``) and ``{prefix}_kendall_tau``; each observation is one request's value (a mean
    over its candidates for PD).
    """

    def __init__(self, prefix: str, between: str, labels: list[str],
                 registry: CollectorRegistry) -> None:
        self.pd_relative = Histogram(
            f"{prefix}_prediction_difference_relative",
            f"Relative PD {between} (mean over its candidates of |p1 - p2| / "
            "((|p1| + |p2|) / 2)).", labels, buckets=PD_BUCKETS, registry=registry)
        self.pd_absolute = Histogram(
            f"{prefix}_prediction_difference_absolute",
            f"Absolute PD {between} (mean over its candidates of |p1 - p2|).", labels,
            buckets=PD_BUCKETS, registry=registry)
        self.topk_swap = Histogram(
            f"{prefix}_topk_swap_rate", f"Top-k swap rate 1 - |topk(A) & topk(B)| / k "
            f"{between}, by k.", [*labels, "k"], buckets=SWAP_BUCKETS, registry=registry)
        self.kendall_tau = Histogram(
            f"{prefix}_kendall_tau", f"Kendall tau-b of the candidate scores {between}.",
            labels, buckets=TAU_BUCKETS, registry=registry)



def request_metrics_rows(scores_a: np.ndarray, scores_b: np.ndarray, ranked: bool = True
                         ) -> dict[str, np.ndarray]:
    """Reproducibility metrics of each request (row) of [requests, candidates] score arrays.

    Computed with :mod:`steadyrank.model.measures.metrics`, vectorised over the requests.
    With ``ranked``: top-k swap only for k below the number of candidates (with k or fewer,
    both top-k sets are all of them and cannot differ); Kendall tau for 2 to 2,000
    candidates. Without: the prediction differences only.
    """
    n = scores_a.shape[1]
    out = {"relative_pd": repro.relative_pd_per_example(scores_a, scores_b).mean(axis=1),
           "absolute_pd": repro.absolute_pd_per_example(scores_a, scores_b).mean(axis=1)}
    if not ranked:
        return out
    for k in repro.SWAP_KS:
        if k < n:
            out[repro.swap_key(k)] = repro.topk_swap(scores_a, scores_b, k)
    if 2 <= n <= KENDALL_MAX_CANDIDATES:
        out["kendall_tau"] = repro.kendall_tau_rows(scores_a, scores_b)
    return out


def request_metrics(scores_a: np.ndarray, scores_b: np.ndarray) -> dict[str, float]:
    """func:`request_metrics_rows` of one request's candidate scores."""
    rows = request_metrics_rows(np.asarray(scores_a)[None], np.asarray(scores_b)[None])
    return {name: float(values[0]) for name, values in rows.items()}


def observe(family: PairHistograms, labels: list[tuple[str, ...]], scores_a: list[np.ndarray],
            scores_b: list[np.ndarray], ranked: list[bool] | None = None) -> None:
    """Records each request pair's metrics in a family of histograms (one label set each).

    Requests with the same number of candidates (and ``ranked`` flag) are measured together.
    """
    flags = ranked or [True] * len(scores_a)
    by_size: dict[tuple[int, bool], list[int]] = {}
    for i, scores in enumerate(scores_a):
        by_size.setdefault((scores.size, flags[i]), []).append(i)
    for (_, is_ranked), members in by_size.items():
        values = request_metrics_rows(np.stack([scores_a[i] for i in members]),
                                      np.stack([scores_b[i] for i in members]), is_ranked)
        for row, i in enumerate(members):
            family.pd_relative.labels(*labels[i]).observe(values["relative_pd"][row])
            family.pd_absolute.labels(*labels[i]).observe(values["absolute_pd"][row])
            for k in repro.SWAP_KS:
                if repro.swap_key(k) in values:
                    family.topk_swap.labels(*labels[i], str(k)).observe(
                        values[repro.swap_key(k)][row])
            if "kendall_tau" in values:
                family.kendall_tau.labels(*labels[i]).observe(values["kendall_tau"][row])
