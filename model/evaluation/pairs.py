"""Replica pairs: which seeds replicas A and B of pair p take for each source of
disagreement, and the measures of a trained pair (accuracy, PD on every eval row, the PD
breakdown, top-k swap and Kendall tau of the ranking requests, cost). Used by
``steadyrank compare`` and by the production trainer's offline numbers.

- ``all``: the init seed and the row-order seed differ (2p+1 vs 2p+2 for both);
- ``init``: the init seed only (the order seed is 2p+1 for both);
- ``order``: the row-order seed only (the init seed is 2p+1 for both);
- ``async``: nothing but asynchronous parameter-server training (both seeds 2p+1).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from steadyrank.model.artifact.layout import RARITY
from steadyrank.model.artifact.reader import LoadedModel
from steadyrank.model.data.batches import concat
from steadyrank.model.data.splits import Prepared
from steadyrank.model.evaluation.breakdown import explain, flat
from steadyrank.model.evaluation.evalset import (
    Requests,
    eval_scores,
    rank_all,
    request_latency,
)
from steadyrank.model.measures import metrics
from steadyrank.model.measures.accuracy import accuracy

VARY = ("all", "init", "order", "async")


def replica_seeds(vary: str, pair: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """((init, order) of replica A, (init, order) of replica B) for pair index ``pair``."""
    first, second = 2 * pair + 1, 2 * pair + 2
    if vary == "all":
        return (first, first), (second, second)
    if vary == "init":
        return (first, first), (second, first)
    if vary == "order":
        return (first, first), (first, second)
    if vary == "async":
        return (first, first), (first, first)
    raise ValueError(f"--vary must be one of {', '.join(VARY)}, got {vary!r}")


def parse_vary(text: str) -> list[str]:
    """``"all,order"`` -> ["all", "order"]; errors name the bad value."""
    out = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in out if v not in VARY]
    if bad or not out:
        raise ValueError(f"--vary must name sources among {', '.join(VARY)}, got {text!r}")
    return list(dict.fromkeys(out))


def replica_pair_metrics(a: LoadedModel, b: LoadedModel, prepared: Prepared,
                         requests: Requests | None, tau_users: int) -> dict[str, Any]:
    """Accuracy of each replica and reproducibility metrics between the two: PD on every
    eval row; top-k swap and Kendall tau of the ranking requests (when the schema ranks)."""
    (pa, labels), (pb, _) = eval_scores(a, prepared), eval_scores(b, prepared)
    breakdown = {}
    if RARITY in a.signature_defs:  # exports made before the breakdown existed have none
        rows = concat(list(prepared.eval_batches()))
        breakdown = flat(explain(a, b, rows.inputs))
    task = prepared.schema.label.task
    acc_a, acc_b = accuracy(task, labels, pa), accuracy(task, labels, pb)
    out: dict[str, Any] = {k: (acc_a[k] + acc_b[k]) / 2 for k in acc_a}
    out["relative_pd"] = metrics.relative_pd(pa, pb)
    out["absolute_pd"] = metrics.absolute_pd(pa, pb)
    if requests is not None and len(requests):
        ra, rb = rank_all(a, requests), rank_all(b, requests)
        for k in metrics.SWAP_KS:
            out[metrics.swap_key(k)] = metrics.topk_swap_rate(ra, rb, k)
        out["kendall_tau"] = float(np.mean([metrics.kendall_tau(ra[i], rb[i])
                                            for i in range(min(tau_users, len(requests)))]))
    out["train_seconds"] = (a.manifest.training_seconds + b.manifest.training_seconds) / 2
    out["train_examples_per_second"] = (a.manifest.examples_per_second
                                        + b.manifest.examples_per_second) / 2
    out["parameters"] = a.manifest.parameters
    out.update(breakdown)
    out["request_seconds"] = (request_latency(a, requests, prepared)
                              + request_latency(b, requests, prepared)) / 2
    return out
