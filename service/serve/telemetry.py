"""The server's Prometheus metrics, on a registry of its own (one per server instance)."""

from __future__ import annotations

import threading
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from steadyrank.model.artifact.manifest import Manifest
from steadyrank.model.measures.metrics import SWAP_KS, swap_key
from steadyrank.service.pair_metrics import (
    CHURN_LABELS,
    PAIR_LABELS,
    PD_BUCKETS,
    PairHistograms,
)

# Sub-millisecond resolution at the low end: an in-process model call takes ~1 ms.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005,
                   0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_REQUEST_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
BATCH_ROW_BUCKETS = (1, 10, 100, 500, 1000, 2000, 4000, 8000, 16000, 32000, 64000)
LOAD_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
# Relative PD of replicas is typically 0.01-0.1; absolute PD (ratings) 0.01-0.3.
class ServerMetrics:
    """Request, batching and model-version metrics of one server.

    With ``worker`` (a worker process of ``steadyrank serve --workers N``), the values live in
    prometheus_client's multiprocess files (``PROMETHEUS_MULTIPROC_DIR``, set before the
    process imports prometheus_client) and the supervisor serves the sum: counters and
    histograms add up across workers; each gauge says how workers combine (``livesum`` for
    queue depths, ``livemax``/``livemin`` for facts all workers share); the per-worker model
    state carries a ``worker`` label. Label sets cannot be removed from multiprocess files,
    so a dropped state is set to 0 and a dropped version's facts to NaN instead.
    """

    def __init__(self, registry: CollectorRegistry | None = None,
                 worker: str | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.worker = worker
        r = self.registry

        def fact(name: str, documentation: str, labels: list[str]) -> Gauge:
            """A fact all workers share (from manifests and gate files): their max."""
            return Gauge(name, documentation, labels, registry=r, multiprocess_mode="livemax")

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
            "steadyrank_batch_queue_depth", "Requests waiting for a model call.", registry=r,
            multiprocess_mode="livesum")
        self.inflight_bytes = Gauge(
            "steadyrank_inflight_request_bytes",
            "Bytes of request bodies being handled now (bounded by --max-inflight-bytes).",
            registry=r, multiprocess_mode="livesum")
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
            "UNLOADING, END); error is 1 for a version that failed to load; by worker "
            "process when there are several.",
            ["model", "version", "state", "error", *(["worker"] if worker else [])],
            registry=r, multiprocess_mode="livemax")
        self.loads = Counter(
            "steadyrank_model_loads", "Model version loads, by model and result (ok, error).",
            ["model", "result"], registry=r)
        self.load_seconds = Histogram(
            "steadyrank_model_load_duration_seconds",
            "Time to load and warm up a model version.", ["model"], buckets=LOAD_BUCKETS,
            registry=r)
        self.replica = PairHistograms(
            "steadyrank_replica", "between the two replicas, per shadowed request",
            PAIR_LABELS, r)
        self.unknown_ids = Counter(
            "steadyrank_unknown_ids",
            "Distinct ids per request that the model has never seen (not in its catalog, or "
            "users without stored features), by model and role (user, item).",
            ["model", "role"], registry=r)
        self.unknown_id_requests = Counter(
            "steadyrank_unknown_id_requests",
            "Requests naming at least one id the model has never seen.", ["model"],
            registry=r)
        self.id_checked_requests = Counter(
            "steadyrank_id_checked_requests",
            "Requests whose ids were checked against the model's catalog and users.",
            ["model"], registry=r)
        self.replica_by_rarity = Histogram(
            "steadyrank_replica_row_prediction_difference_relative",
            "Relative PD between the two replicas of each shadowed row, by the training "
            "count of the row's rarest categorical value (oov: a row training never "
            "reached; 1; 2-4; 5-99; 100+); rows of models with a rarity signature.",
            ["model", "rarest"], buckets=PD_BUCKETS, registry=r)
        self.churn = PairHistograms(
            "steadyrank_version_churn",
            "between the replaced and the new version, per sampled request in the churn "
            "window after a switch", CHURN_LABELS, r)
        self.churn_pairs = Counter(
            "steadyrank_version_churn_pairs",
            "Requests scored by both the replaced and the new version and compared.",
            ["model"], registry=r)
        self.churn_dropped = Counter(
            "steadyrank_version_churn_dropped",
            "Churn samples not compared, by reason (queue_full, version_failed).",
            ["model", "reason"], registry=r)
        self.churn_window_open = Gauge(
            "steadyrank_version_churn_window_open",
            "1 while the replaced version is kept to measure churn after a switch, else 0.",
            ["model"], registry=r, multiprocess_mode="livemax")
        self.shadow_pairs = Counter(
            "steadyrank_shadow_pairs", "Requests scored by both replicas and compared.",
            ["model"], registry=r)
        self.shadow_dropped = Counter(
            "steadyrank_shadow_dropped",
            "Sampled requests not compared, by reason (queue_full, replica_missing, "
            "replica_failed).", ["model", "reason"], registry=r)
        self.shadow_seconds = Histogram(
            "steadyrank_shadow_call_duration_seconds",
            "Duration of one shadow model call on the second replica.", ["model"],
            buckets=LATENCY_BUCKETS, registry=r)
        self.replica_up = Gauge(
            "steadyrank_replica_up",
            "1 if the second replica answered its last shadow call, 0 if missing or failing "
            "(the lowest of the workers).", ["model"], registry=r, multiprocess_mode="livemin")
        self.offline_pd = fact(
            "steadyrank_model_offline_prediction_difference_relative",
            "Relative PD between this version and its replica on the eval split, measured "
            "by the trainer before publishing it.", ["model", "version"])
        self.offline_swap = fact(
            "steadyrank_model_offline_topk_swap_rate",
            "Top-k swap rate between this version and its replica on full-catalog rankings, "
            "measured by the trainer.", ["model", "version", "k"])
        self.training_seconds = fact(
            "steadyrank_model_training_duration_seconds",
            "Training time of a loaded version, from its manifest.", ["model", "version"])
        self.created = fact(
            "steadyrank_model_created_timestamp_seconds",
            "When a loaded version was exported (Unix time), from its manifest.",
            ["model", "version"])
        self.retrain_churn_pd = fact(
            "steadyrank_retrain_churn_prediction_difference_relative",
            "Relative PD of the trainer's latest retrain against the version it would "
            "replace (eval split), published or not.", ["model"])
        self.retrain_churn_swap = fact(
            "steadyrank_retrain_churn_topk_swap_rate",
            "Top-k swap rate of the trainer's latest retrain against the version it would "
            "replace.", ["model", "k"])
        self.retrain_published = fact(
            "steadyrank_retrain_published",
            "1 if the trainer's latest retrain passed the churn gate and was published, "
            "0 if it was held back.", ["model"])
        self.retrain_held = fact(
            "steadyrank_retrain_held_back_versions",
            "Retrains the churn gate has held back so far (from the trainer's gate file).",
            ["model"])
        self.follow = {key: fact(f"steadyrank_follow_{key}", text, ["model"]) for key, text in (
            ("round", "The following trainer's latest published round."),
            ("round_rows", "Rows the latest round trained on (its new shards and replay)."),
            ("progressive_log_loss", "Log loss of the serving version on the latest round's "
             "newest shard, before training on it (progressive validation)."),
            ("progressive_rmse", "RMSE of the serving version on the latest round's newest "
             "shard, before training on it (progressive validation)."),
            ("oov_share", "Share of the latest round's newest-shard rows that meet an "
             "out-of-vocabulary row of the serving version."),
            ("pending_shards", "Shards that arrived and no round has trained on yet."),
            ("waiting_since_timestamp_seconds", "Since when shards have been waiting (Unix "
             "time; 0: none waits)."),
            ("round_timestamp_seconds", "When the latest round ended (Unix time)."))}
        self._states: dict[tuple[str, str], tuple[str, ...]] = {}
        self._info: dict[tuple[str, str], list[tuple[Gauge, tuple[str, ...]]]] = {}
        self._lock = threading.Lock()

    def set_version_state(self, model: str, version: int, state: str, error: bool) -> None:
        """Records ``model``/``version`` as being in ``state`` (replacing its previous one)."""
        key = (model, str(version))
        labels = (state, "1" if error else "0", *([self.worker] if self.worker else []))
        with self._lock:
            previous = self._states.get(key)
            if previous == labels:
                return
            if previous is not None:
                self._drop(self.version_state, (*key, *previous))
            self._states[key] = labels
            self.version_state.labels(*key, *labels).set(1)

    def _drop(self, gauge: Gauge, labels: tuple[str, ...], value: float = 0.0) -> None:
        """Removes a label set; in a worker process (multiprocess files, where removal is
        not possible) sets it to ``value`` instead."""
        if self.worker:
            gauge.labels(*labels).set(value)
        else:
            gauge.remove(*labels)

    def set_model_info(self, model: str, version: int, manifest: Manifest) -> None:
        """Training time, export time and offline reproducibility of a loaded version; its
        model's unknown-id counters start at 0 (so their rates exist before any request)."""
        for counter in (self.unknown_id_requests, self.id_checked_requests):
            counter.labels(model)
        for role in ("user", "item"):
            self.unknown_ids.labels(model, role)
        key = (model, str(version))
        values: list[tuple[Gauge, tuple[str, ...], float]] = []
        if "seconds" in manifest.training:
            values.append((self.training_seconds, key, manifest.training_seconds))
        if manifest.created is not None:
            values.append((self.created, key, float(manifest.created)))
        offline = manifest.offline_reproducibility
        if "relative_pd" in offline:
            values.append((self.offline_pd, key, float(offline["relative_pd"])))
        for k in SWAP_KS:
            if swap_key(k) in offline:
                values.append((self.offline_swap, (*key, str(k)),
                               float(offline[swap_key(k)])))
        with self._lock:
            for gauge, labels, value in values:
                gauge.labels(*labels).set(value)
            self._info[key] = [(gauge, labels) for gauge, labels, _ in values]

    def set_churn_gate(self, model: str, record: dict[str, Any]) -> None:
        """The trainer's latest churn gate decision for ``model`` (its gate file)."""
        churn = record.get("churn") or {}
        if "relative_pd" in churn:
            self.retrain_churn_pd.labels(model).set(float(churn["relative_pd"]))
        for k in SWAP_KS:
            if swap_key(k) in churn:
                self.retrain_churn_swap.labels(model, str(k)).set(
                    float(churn[swap_key(k)]))
        self.retrain_published.labels(model).set(1.0 if record.get("published") else 0.0)
        self.retrain_held.labels(model).set(float(record.get("rejected", 0)))

    def set_follow_status(self, model: str, record: dict[str, Any]) -> None:
        """A following trainer's status for ``model`` (its status file)."""
        values = {"round": record.get("round"), "round_rows": record.get("rows"),
                  "progressive_log_loss": record.get("progressive_log_loss"),
                  "progressive_rmse": record.get("progressive_rmse"),
                  "oov_share": record.get("oov_share"),
                  "pending_shards": record.get("pending_shards"),
                  "waiting_since_timestamp_seconds": record.get("waiting_since"),
                  "round_timestamp_seconds": record.get("round_time")}
        for key, value in values.items():
            if isinstance(value, int | float):
                self.follow[key].labels(model).set(float(value))

    def forget_version(self, model: str, version: int) -> None:
        """Drops a version whose folder is gone from the per-version gauges."""
        key = (model, str(version))
        with self._lock:
            previous = self._states.pop(key, None)
            if previous is not None:
                self._drop(self.version_state, (*key, *previous))
            for gauge, labels in self._info.pop(key, []):
                self._drop(gauge, labels, float("nan"))
