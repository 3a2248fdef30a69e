"""The server's Prometheus metrics, on a registry of its own (one per server instance)."""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Sub-millisecond resolution at the low end: an in-process model call takes ~1 ms.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005,
                   0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_REQUEST_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
BATCH_ROW_BUCKETS = (1, 10, 100, 500, 1000, 2000, 4000, 8000, 16000, 32000, 64000)
LOAD_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
STATES = ("LOADING", "AVAILABLE", "UNLOADING", "END")


class ServerMetrics:
    """Request, batching and model-version metrics of one server."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "steadyrank_requests", "gRPC requests answered, by method and status code.",
            ["method", "code"], registry=r)
        self.request_seconds = Histogram(
            "steadyrank_request_duration_seconds",
            "Time from receiving a request to answering it, by method.",
            ["method"], buckets=LATENCY_BUCKETS, registry=r)
        self.batch_requests = Histogram(
            "steadyrank_batch_requests", "Requests merged into one model call.",
            buckets=BATCH_REQUEST_BUCKETS, registry=r)
        self.batch_rows = Histogram(
            "steadyrank_batch_rows", "(user, item) pairs scored by one model call.",
            buckets=BATCH_ROW_BUCKETS, registry=r)
        self.queue_depth = Gauge(
            "steadyrank_batch_queue_depth", "Requests waiting for a model call.", registry=r)
        self.queue_rejections = Counter(
            "steadyrank_batch_queue_rejections",
            "Requests refused with RESOURCE_EXHAUSTED because the batch queue was full.",
            registry=r)
        self.model_call_seconds = Histogram(
            "steadyrank_model_call_duration_seconds", "Duration of one model call, by model.",
            ["model"], buckets=LATENCY_BUCKETS, registry=r)
        self.version_state = Gauge(
            "steadyrank_model_version_state",
            "1 for the state each known version of a model is in (LOADING, AVAILABLE, "
            "UNLOADING, END); error is 1 for a version that failed to load.",
            ["model", "version", "state", "error"], registry=r)
        self.loads = Counter(
            "steadyrank_model_loads", "Model version loads, by model and result (ok, error).",
            ["model", "result"], registry=r)
        self.load_seconds = Histogram(
            "steadyrank_model_load_duration_seconds",
            "Time to load and warm up a model version.", ["model"], buckets=LOAD_BUCKETS,
            registry=r)
        self._states: dict[tuple[str, str], tuple[str, str]] = {}
        self._lock = threading.Lock()

    def set_version_state(self, model: str, version: int, state: str, error: bool) -> None:
        """Records ``model``/``version`` as being in ``state`` (replacing its previous one)."""
        key = (model, str(version))
        labels = (state, "1" if error else "0")
        with self._lock:
            previous = self._states.get(key)
            if previous == labels:
                return
            if previous is not None:
                self.version_state.remove(*key, *previous)
            self._states[key] = labels
            self.version_state.labels(*key, *labels).set(1)

    def forget_version(self, model: str, version: int) -> None:
        """Drops a version whose folder is gone from the state gauge."""
        key = (model, str(version))
        with self._lock:
            previous = self._states.pop(key, None)
            if previous is not None:
                self.version_state.remove(*key, *previous)
