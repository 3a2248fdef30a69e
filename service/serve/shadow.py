"""Shadow scoring: a sample of live Rank requests is also scored by the second replica.

After the primary has answered, :meth:`ShadowScorer.offer` samples the request (its rows of
a row-wise signature, any schema, and the primary's scores) at
``rate`` and puts it on a bounded queue (a full queue drops it and counts the drop). A
background thread takes what is queued, scores it with the replica ``NAME-b`` in one model
call, and records, per request pair, the reproducibility metrics of
:mod:`steadyrank.model.measures.metrics` (the functions ``steadyrank compare`` uses) as Prometheus
histograms. After a version switch, for a warm-up window, a sample of requests is also
scored by the replaced version, and the same metrics measure the churn a retrain causes
(``steadyrank_version_churn_*``). None of this runs on the request path: a missing, failing
or slow replica shows in ``steadyrank_replica_up``, in ``GetModelStatus`` and in the drop
counters, never in primary answers.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from steadyrank.model.artifact.layout import (
    RAREST_COUNT,
    RARITY,
    RARITY_BUCKETS,
    SCORE,
    SERVING_DEFAULT,
    rarity_bucket,
)
from steadyrank.model.measures import metrics as repro
from steadyrank.service.pair_metrics import observe
from steadyrank.service.serve.batching import batch_key
from steadyrank.service.serve.servable import Servable
from steadyrank.service.serve.telemetry import ServerMetrics
from steadyrank.service.settings import ServerConfig

log = logging.getLogger("steadyrank.shadow")
MAX_JOBS_PER_CALL = 64


class ModelSource(Protocol):
    """Where the shadow scorer finds the models to compare (a :class:`ModelManager`)."""

    def replica_b(self, name: str) -> Servable | None:
        """The loaded second replica of model ``name``, if any."""

    def previous(self, name: str) -> Servable | None:
        """The version ``name`` served before its last switch, while its churn window lasts."""

    def report_health(self, servable: Servable, error: str) -> None:
        """Records that a call to ``servable`` failed (``error``) or worked (empty)."""


@dataclass(frozen=True)
class ShadowJob:
    """A primary answer to compare with another model: its rows and scores.

    ``kind`` is "replica" (compare with the second replica, found when scored) or "churn"
    (compare with ``other``, the version the primary replaced). ``signature``: the row-wise
    signature that scored ``inputs`` (``serving_default`` or ``examples``). ``ranked``:
    whether the rows are one user's candidates (a Rank request), so that top-k swap and
    Kendall tau mean something; otherwise only the prediction differences are measured.
    """

    kind: str
    primary: Servable
    signature: str
    inputs: dict[str, np.ndarray]
    scores: np.ndarray
    ranked: bool
    other: Servable | None = None

    @property
    def rows(self) -> int:
        """The number of scored rows."""
        return int(self.scores.size)


class ShadowScorer:
    """Samples requests and compares the primary's scores with another model's.

    Two comparisons: with the second replica (at ``rate``), and, during the churn window
    after a version switch, with the replaced version (at ``churn_rate``). The thread
    gathers jobs for up to ``gather_seconds`` (or ``MAX_JOBS_PER_CALL`` jobs) per model call.
    """

    def __init__(self, models: ModelSource, metrics: ServerMetrics,
                 rate: float = ServerConfig.shadow_rate,
                 max_queue: int = ServerConfig.shadow_queue, seed: int | None = None,
                 churn_rate: float = ServerConfig.churn_rate, gather_seconds: float = 0.1
                 ) -> None:
        for name, value in (("shadow rate", rate), ("churn rate", churn_rate)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if max_queue < 1:
            raise ValueError(f"shadow queue must hold >= 1 request, got {max_queue}")
        self.models = models
        self.metrics = metrics
        self.rate = rate
        self.churn_rate = churn_rate
        self.gather_seconds = gather_seconds
        self._queue: queue.Queue[ShadowJob | None] = queue.Queue(max_queue)
        self._random = random.Random(seed)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Starts the shadow thread (nothing to do when both rates are 0)."""
        if (self.rate > 0 or self.churn_rate > 0) and self._thread is None:
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

    def offer(self, primary: Servable, signature: str, inputs: dict[str, np.ndarray],
              scores: np.ndarray, ranked: bool, replica: bool = True) -> int:
        """Samples an answer of ``primary`` for comparison; never blocks.

        ``inputs``: the rows ``signature`` scored (``scores``); ``ranked``: whether they are
        one user's candidates. ``replica``: whether to sample it for the replica comparison
        (False for a request answered by the second replica itself). The number of
        comparisons queued.
        """
        if self._thread is None or np.size(scores) == 0:
            return 0
        queued = 0
        if replica and self.rate > 0 and self._random.random() < self.rate:
            queued += self._put(ShadowJob("replica", primary, signature, inputs, scores,
                                          ranked))
        if self.churn_rate > 0:
            old = self.models.previous(primary.name)
            if old is not None and self._random.random() < self.churn_rate:
                queued += self._put(ShadowJob("churn", primary, signature, inputs, scores,
                                              ranked, old))
        return queued

    def _put(self, job: ShadowJob) -> bool:
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            dropped = self.metrics.shadow_dropped if job.kind == "replica" else \
                self.metrics.churn_dropped
            dropped.labels(job.primary.name, "queue_full").inc()
            return False
        return True

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            # Gather for a while: one model call and one metrics pass per many jobs cost far
            # less server time (GIL, dispatch) than one per job. Shadow work is not in a hurry.
            jobs = [job]
            until = time.monotonic() + self.gather_seconds
            while len(jobs) < MAX_JOBS_PER_CALL:
                try:
                    more = self._queue.get(timeout=max(0.0, until - time.monotonic()))
                except queue.Empty:
                    break
                if more is None:
                    self._score(jobs)
                    return
                jobs.append(more)
            self._score(jobs)

    def _score(self, jobs: list[ShadowJob]) -> None:
        groups: dict[tuple[Any, ...], list[ShadowJob]] = {}
        for job in jobs:
            key = (job.kind, job.primary.name, id(job.other),
                   batch_key(job.primary, job.signature, job.inputs)[1:])
            groups.setdefault(key, []).append(job)
        for (kind, model, _, _), group in groups.items():
            try:
                if kind == "replica":
                    self._score_replica(model, group)
                else:
                    self._score_churn(model, group)
            except Exception:  # noqa: BLE001  (shadow work must never take the server down)
                log.exception("%s scoring of %s failed", kind, model)

    def _score_replica(self, model: str, jobs: list[ShadowJob]) -> None:
        m = self.metrics
        replica = self.models.replica_b(model)
        if replica is None:
            m.replica_up.labels(model).set(0)
            m.shadow_dropped.labels(model, "replica_missing").inc(len(jobs))
            return
        started = time.perf_counter()
        scores = self._call(replica, jobs)
        if scores is None:
            m.replica_up.labels(model).set(0)
            m.shadow_dropped.labels(model, "replica_failed").inc(len(jobs))
            return
        m.replica_up.labels(model).set(1)
        m.shadow_seconds.labels(model).observe(time.perf_counter() - started)
        observe(m.replica, [(model, str(j.primary.version), str(replica.version)) for j in jobs],
                [j.scores for j in jobs], scores, [j.ranked for j in jobs])
        self._observe_by_rarity(model, jobs, scores)
        m.shadow_pairs.labels(model).inc(len(jobs))

    def _observe_by_rarity(self, model: str, jobs: list[ShadowJob], scores: list[np.ndarray]
                           ) -> None:
        """Each row's relative PD, by its rarest value's training count (from the primary's
        ``rarity`` signature; rows scored by ``serving_default`` only, whose inputs are the
        values)."""
        primary = jobs[0].primary
        if jobs[0].signature != SERVING_DEFAULT or RARITY not in primary.signature_defs:
            return
        inputs = {k: np.concatenate([j.inputs[k] for j in jobs])
                  for k in primary.signature_defs[RARITY].inputs}
        rarest = rarity_bucket(primary.call(RARITY, inputs)[RAREST_COUNT])
        per_row = repro.relative_pd_per_example(np.concatenate([j.scores for j in jobs]),
                                                np.concatenate(scores))
        for bucket, (name, _) in enumerate(RARITY_BUCKETS):
            histogram = self.metrics.replica_by_rarity.labels(model, name)
            for value in per_row[rarest == bucket]:
                histogram.observe(value)

    def _score_churn(self, model: str, jobs: list[ShadowJob]) -> None:
        m = self.metrics
        old = jobs[0].other
        assert old is not None
        scores = self._call(old, jobs)
        if scores is None:
            m.churn_dropped.labels(model, "version_failed").inc(len(jobs))
            return
        observe(m.churn, [(model, str(old.version), str(j.primary.version)) for j in jobs],
                scores, [j.scores for j in jobs], [j.ranked for j in jobs])
        m.churn_pairs.labels(model).inc(len(jobs))

    def _call(self, servable: Servable, jobs: list[ShadowJob]) -> list[np.ndarray] | None:
        """Scores every job's rows with ``servable`` in one call (the jobs share a signature
        and input names); None if it fails."""
        try:
            inputs = {k: np.concatenate([j.inputs[k] for j in jobs]) for k in jobs[0].inputs}
            scores = servable.call(jobs[0].signature, inputs)[SCORE]
        except Exception as err:  # noqa: BLE001  (a failing model is a state, not a crash)
            log.warning("model %s version %d failed a shadow call: %s", servable.name,
                        servable.version, err)
            self.models.report_health(servable, f"shadow call failed: {err}")
            return None
        self.models.report_health(servable, "")
        bounds = np.cumsum([j.rows for j in jobs])[:-1]
        return np.split(np.asarray(scores), bounds)
