"""Shadow scoring: a sample of live Rank requests is also scored by the second replica.

After the primary has answered, :meth:`ShadowScorer.offer` samples the request at
``rate`` and puts it on a bounded queue (a full queue drops it and counts the drop). A
background thread takes what is queued, scores it with the replica ``NAME-b`` in one model
call, and records, per request pair, the reproducibility metrics of
:mod:`steadyrank.model.metrics` (the functions ``steadyrank compare`` uses) as Prometheus
histograms. None of this runs on the request path: a missing, failing or slow replica shows
in ``steadyrank_replica_up`` and the drop counters, never in primary answers.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from steadyrank.model import metrics as repro
from steadyrank.service.metrics import ServerMetrics
from steadyrank.service.servable import Servable

log = logging.getLogger("steadyrank.shadow")
SWAP_KS = (1, 5, 10)
KENDALL_MAX_CANDIDATES = 2000  # tau is O(n^2); larger requests skip it
MAX_JOBS_PER_CALL = 64


@dataclass(frozen=True)
class ShadowJob:
    """A primary answer to compare: the scored pairs and the primary's scores."""

    model: str
    primary: Servable
    user_id: int
    item_ids: np.ndarray
    scores: np.ndarray


def pair_metrics(scores_a: np.ndarray, scores_b: np.ndarray) -> dict[str, float]:
    """Reproducibility metrics of one request's candidate scores from two models."""
    out = {"relative_pd": repro.relative_pd(scores_a, scores_b),
           "absolute_pd": repro.absolute_pd(scores_a, scores_b)}
    for k in SWAP_KS:
        if k <= scores_a.size:
            out[f"top{k}_swap"] = repro.topk_swap_rate(scores_a, scores_b, k)
    if 2 <= scores_a.size <= KENDALL_MAX_CANDIDATES:
        out["kendall_tau"] = repro.kendall_tau(scores_a, scores_b)
    return out


class ShadowScorer:
    """Samples requests and compares the primary's scores with the second replica's."""

    def __init__(self, replica_of: Callable[[str], Servable | None], metrics: ServerMetrics,
                 rate: float = 0.1, max_queue: int = 256, seed: int | None = None) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"shadow rate must be in [0, 1], got {rate}")
        if max_queue < 1:
            raise ValueError(f"shadow queue must hold >= 1 request, got {max_queue}")
        self.replica_of = replica_of
        self.metrics = metrics
        self.rate = rate
        self._queue: queue.Queue[ShadowJob | None] = queue.Queue(max_queue)
        self._random = random.Random(seed)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Starts the shadow thread (nothing to do at rate 0)."""
        if self.rate > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="shadow", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stops the shadow thread; queued work is dropped (it is only a sample)."""
        if self._thread is None:
            return
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._queue.put(None)
        self._thread.join()
        self._thread = None

    def offer(self, model: str, primary: Servable, user_id: int, item_ids: np.ndarray,
              scores: np.ndarray) -> bool:
        """Samples a primary answer for shadow scoring; never blocks. True if queued."""
        if self._thread is None or self._random.random() >= self.rate:
            return False
        try:
            self._queue.put_nowait(ShadowJob(model, primary, user_id, item_ids, scores))
        except queue.Full:
            self.metrics.shadow_dropped.labels(model, "queue_full").inc()
            return False
        return True

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            jobs = [job]
            while len(jobs) < MAX_JOBS_PER_CALL:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._score(jobs)
                    return
                jobs.append(more)
            self._score(jobs)

    def _score(self, jobs: list[ShadowJob]) -> None:
        by_model: dict[str, list[ShadowJob]] = {}
        for job in jobs:
            by_model.setdefault(job.model, []).append(job)
        for model, group in by_model.items():
            try:
                self._score_model(model, group)
            except Exception:  # noqa: BLE001  (shadow work must never take the server down)
                log.exception("shadow scoring of %s failed", model)

    def _score_model(self, model: str, jobs: list[ShadowJob]) -> None:
        replica = self.replica_of(model)
        if replica is None:
            self.metrics.replica_up.labels(model).set(0)
            self.metrics.shadow_dropped.labels(model, "replica_missing").inc(len(jobs))
            return
        started = time.perf_counter()
        try:
            users = np.concatenate([np.full(j.item_ids.shape, j.user_id, np.int64)
                                    for j in jobs])
            scores = replica.score(users, np.concatenate([j.item_ids for j in jobs]))
        except Exception as err:  # noqa: BLE001  (a failing replica is a state, not a crash)
            log.warning("replica %s version %d failed: %s", replica.name, replica.version, err)
            self.metrics.replica_up.labels(model).set(0)
            self.metrics.shadow_dropped.labels(model, "replica_failed").inc(len(jobs))
            return
        self.metrics.replica_up.labels(model).set(1)
        self.metrics.shadow_seconds.labels(model).observe(time.perf_counter() - started)
        offset = 0
        for job in jobs:
            n = job.item_ids.size
            self.observe(model, job.primary.version, replica.version, job.scores,
                         scores[offset:offset + n])
            offset += n

    def observe(self, model: str, version_a: int, version_b: int, scores_a: np.ndarray,
                scores_b: np.ndarray) -> None:
        """Records one request pair's metrics."""
        labels = (model, str(version_a), str(version_b))
        values = pair_metrics(scores_a, scores_b)
        m = self.metrics
        m.replica_pd_relative.labels(*labels).observe(values["relative_pd"])
        m.replica_pd_absolute.labels(*labels).observe(values["absolute_pd"])
        for k in SWAP_KS:
            if f"top{k}_swap" in values:
                m.replica_topk_swap.labels(*labels, str(k)).observe(values[f"top{k}_swap"])
        if "kendall_tau" in values:
            m.replica_kendall_tau.labels(*labels).observe(values["kendall_tau"])
        m.shadow_pairs.labels(model).inc()
