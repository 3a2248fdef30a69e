"""``steadyrank monitor``: the live reproducibility monitor for any servers that speak
TensorFlow Serving's API (stock TF Serving, ``steadyrank serve``, anything behind them).

It sends the same requests to two or more replica endpoints through
``PredictionService.Predict`` alone (``serving_default``), and compares each replica's
answer with the first's: per request the relative and absolute PD and, for one user's
candidates, the top-k swap rate and Kendall tau, with the functions ``steadyrank compare``
and the built-in monitor use, as the same Prometheus histograms
(``steadyrank_replica_prediction_difference_relative`` and the rest, by ``model``,
``version_a``, ``version_b``) on its own ``/metrics``, so the same dashboard panels show
them.

Requests come from recorded traffic (``steadyrank serve --record-requests DIR``, read with
``--requests DIR``) or are drawn from the model's schema and catalog, as ``traffic`` draws
them: one known user's candidates from the catalog, and random values of each declared
dtype for the context features. The schema comes from ``--export DIR`` (an export of the
model: its manifest names the ids) or from the replicas' own ``GetModelMetadata``
(signatures) with the catalog and users asked through ``Predict``. A reply that is an error,
or not a score per row, is counted (``steadyrank_monitor_errors_total{replica,reason}``),
never a crash.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
from prometheus_client import CollectorRegistry, Counter, start_http_server
from tensorflow_serving.apis import get_model_metadata_pb2, prediction_service_pb2_grpc

from steadyrank.model.artifact.layout import (
    CATALOG,
    ITEM_IDS,
    RANK,
    SCORE,
    SERVING_DEFAULT,
    USER_IDS,
    USERS,
)
from steadyrank.service import client, recorded_requests
from steadyrank.service.client.model_inputs import random_rows
from steadyrank.service.pair_metrics import PAIR_LABELS, PairHistograms, observe
from steadyrank.service.request_schema import InputSpec, input_spec


class MonitorError(ValueError):
    """The monitor cannot start: a bad replica address, or a schema it cannot tell."""


@dataclass(frozen=True)
class Endpoint:
    """A replica: its label, ``HOST:PORT``, and the model name it serves there."""

    label: str
    address: str
    model: str


def parse_replica(text: str, model: str) -> Endpoint:
    """``LABEL=HOST:PORT`` or ``LABEL=HOST:PORT/MODEL`` (another model name there)."""
    label, sep, rest = text.partition("=")
    address, _, name = rest.partition("/")
    host, colon, port = address.rpartition(":")
    if not sep or not label or not colon or not host or not port.isdigit():
        raise MonitorError(f"--replica {text!r}: expected LABEL=HOST:PORT or "
                           "LABEL=HOST:PORT/MODEL")
    return Endpoint(label, address, name or model)


@dataclass(frozen=True)
class Schema:
    """What the monitor sends: ``serving_default``'s inputs, and, for a ranking model, the
    user and item id inputs with the known users and the catalog."""

    rows: dict[str, InputSpec]
    user: str | None = None
    item: str | None = None
    catalog: np.ndarray | None = None
    users: np.ndarray | None = None

    @property
    def ranks(self) -> bool:
        """Whether requests are one user's candidates."""
        return self.item is not None and self.catalog is not None and self.catalog.size > 0


def schema_from_export(path: str | Path) -> Schema:
    """The schema, catalog and users of an export (its manifest names the ids)."""
    from steadyrank.model.artifact import reader

    model = reader.load(path)
    rows = {n: input_spec(n, i, 1) for n, i in
            model.signature_defs[SERVING_DEFAULT].inputs.items()}
    if not model.ranks:
        return Schema(rows)
    user, item = model.manifest.id_inputs(model.signature_defs)
    users = (model.module.signatures[USERS]()[USER_IDS].numpy()
             if USERS in model.signature_defs else None)
    return Schema(rows, user, item, model.item_ids, users)


def schema_from_metadata(channel: grpc.Channel, model: str, user_input: str | None = None,
                         timeout: float = 30.0) -> Schema:
    """The schema from a replica's ``GetModelMetadata`` and, for a ranking model (``rank``
    and ``catalog`` signatures), its catalog and users through ``Predict``. The item id is
    ``serving_default``'s input that ``rank`` lacks; the user id is ``rank``'s one other
    input, or ``user_input`` when ``rank`` has context inputs too."""
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = model
    answer = stub.GetModelMetadata(request, timeout=timeout)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    answer.metadata["signature_def"].Unpack(signatures)
    defs = signatures.signature_def
    if SERVING_DEFAULT not in defs:
        raise MonitorError(f"model {model!r} has no {SERVING_DEFAULT} signature")
    rows = {n: input_spec(n, i, 1) for n, i in defs[SERVING_DEFAULT].inputs.items()}
    if RANK not in defs or CATALOG not in defs:
        return Schema(rows)
    rank_inputs = set(defs[RANK].inputs) - {ITEM_IDS}
    (item,) = set(rows) - rank_inputs
    if user_input is None:
        if len(rank_inputs) != 1:
            raise MonitorError(
                f"model {model!r}: its user id is one of {', '.join(sorted(rank_inputs))}; "
                "name it with --user-input NAME, or give --export DIR")
        (user_input,) = rank_inputs
    elif user_input not in rank_inputs:
        raise MonitorError(f"--user-input {user_input!r}: not an input of model {model!r}'s "
                           f"{RANK} signature ({', '.join(sorted(rank_inputs))})")
    catalog = client.predict_signature(stub, model, CATALOG, timeout)[ITEM_IDS]
    users = (client.predict_signature(stub, model, USERS, timeout)[USER_IDS]
             if USERS in defs else None)
    return Schema(rows, user_input, item, catalog, users)


def drawn(schema: Schema, candidates: int, seed: int = 0
          ) -> Iterator[tuple[dict[str, np.ndarray], bool]]:
    """Endless requests drawn from the schema: one known user's ``candidates`` catalog
    items (ranked), or ``candidates`` rows of random values (a model without ids)."""
    rng = np.random.default_rng(seed)
    while True:
        if not schema.ranks:
            yield random_rows(rng, schema.rows, max(1, candidates)), False
            continue
        n = min(candidates, schema.catalog.size)
        rows = random_rows(rng, schema.rows, 1)
        rows = {k: np.repeat(v, n, axis=0) for k, v in rows.items()}
        rows[schema.item] = rng.choice(schema.catalog, n, replace=False)
        if schema.users is not None and schema.users.size:
            rows[schema.user] = np.repeat(rng.choice(schema.users, 1), n)
        yield rows, True


def replayed(folder: str | Path, model: str, loop: bool = True
             ) -> Iterator[tuple[dict[str, np.ndarray], bool]]:
    """Recorded requests of ``model`` (``steadyrank serve --record-requests``), again and
    again with ``loop``. MonitorError when there are none."""
    first = True
    while True:
        count = 0
        for record in recorded_requests.read(folder, model):
            count += 1
            yield record.rows, record.ranked
        if count == 0 and first:
            raise MonitorError(f"--requests {folder}: no recorded requests of model {model!r}")
        first = False
        if not loop:
            return


@dataclass
class MonitorMetrics:
    """The monitor's own registry: the replica histograms the server exports, and counts."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.replica = PairHistograms("steadyrank_replica", "between two replicas, per "
                                      "monitored request", PAIR_LABELS, r)
        self.requests = Counter("steadyrank_monitor_requests",
                                "Requests the monitor sent, by replica and status code.",
                                ["replica", "code"], registry=r)
        self.errors = Counter("steadyrank_monitor_errors",
                              "Replies the monitor could not compare, by replica and reason "
                              "(rpc, no_score, bad_shape, not_finite).",
                              ["replica", "reason"], registry=r)
        self.pairs = Counter("steadyrank_monitor_pairs",
                             "Request pairs compared, by model.", ["model"], registry=r)


class Monitor:
    """Sends each request to every replica and records how their answers differ."""

    def __init__(self, model: str, endpoints: list[Endpoint], metrics: MonitorMetrics,
                 timeout: float = 10.0) -> None:
        if len(endpoints) < 2:
            raise MonitorError("steadyrank monitor needs two or more --replica endpoints")
        if len({e.label for e in endpoints}) != len(endpoints):
            raise MonitorError("--replica labels must differ")
        self.model, self.endpoints, self.metrics = model, endpoints, metrics
        self.timeout = timeout
        self._channels = [grpc.insecure_channel(e.address) for e in endpoints]
        self._stubs = [prediction_service_pb2_grpc.PredictionServiceStub(c)
                       for c in self._channels]
        self._pool = ThreadPoolExecutor(len(endpoints))

    def close(self) -> None:
        """Closes the channels."""
        self._pool.shutdown(wait=True)
        for channel in self._channels:
            channel.close()

    def _ask(self, i: int, rows: dict[str, np.ndarray]) -> tuple[np.ndarray, str] | None:
        """Replica i's scores of the rows and the version that answered, or None (counted)."""
        import tensorflow as tf

        endpoint = self.endpoints[i]
        request = client.predict_request(endpoint.model, rows)
        try:
            answer = self._stubs[i].Predict(request, timeout=self.timeout)
        except grpc.RpcError as err:
            self.metrics.requests.labels(endpoint.label, err.code().name).inc()
            self.metrics.errors.labels(endpoint.label, "rpc").inc()
            return None
        self.metrics.requests.labels(endpoint.label, "OK").inc()
        if SCORE not in answer.outputs:
            self.metrics.errors.labels(endpoint.label, "no_score").inc()
            return None
        try:
            scores = np.asarray(tf.make_ndarray(answer.outputs[SCORE]), np.float64)
        except (TypeError, ValueError):
            self.metrics.errors.labels(endpoint.label, "bad_shape").inc()
            return None
        n = len(next(iter(rows.values())))
        if scores.shape != (n,):
            self.metrics.errors.labels(endpoint.label, "bad_shape").inc()
            return None
        if not np.isfinite(scores).all():
            self.metrics.errors.labels(endpoint.label, "not_finite").inc()
            return None
        return scores, str(answer.model_spec.version.value)

    def compare(self, rows: dict[str, np.ndarray], ranked: bool) -> int:
        """Sends one request to every replica and records each replica against the first;
        returns how many pairs were compared."""
        answers = list(self._pool.map(lambda i: self._ask(i, rows), range(len(self.endpoints))))
        if answers[0] is None:
            return 0
        (first, version_a), compared = answers[0], 0
        for answer in answers[1:]:
            if answer is None:
                continue
            scores, version_b = answer
            observe(self.metrics.replica, [(self.model, version_a, version_b)], [first],
                    [scores], [ranked])
            compared += 1
        self.metrics.pairs.labels(self.model).inc(compared)
        return compared

    def run(self, requests: Iterator[tuple[dict[str, np.ndarray], bool]], rate: float = 0.0,
            duration: float = 0.0, limit: int = 0,
            should_stop: Callable[[float], bool] = lambda _: False,
            log: Callable[[str], None] = print, report_every: float = 30.0) -> int:
        """Compares requests at ``rate``/s (0: as fast as answers come) for ``duration``
        seconds or ``limit`` requests (0: no bound) or until ``should_stop``; returns how
        many pairs it compared."""
        started = last = time.monotonic()
        pairs = sent = 0
        for rows, ranked in itertools.islice(requests, limit or None):
            pairs += self.compare(rows, ranked)
            sent += 1
            now = time.monotonic()
            if duration and now - started >= duration:
                break
            if now - last >= report_every:
                log(f"{sent:,} requests, {pairs:,} pairs compared")
                last = now
            wait = (started + sent / rate - time.monotonic()) if rate > 0 else 0.0
            if should_stop(max(0.0, wait)):
                break
        log(f"done: {sent:,} requests, {pairs:,} pairs compared")
        return pairs


def serve_metrics(metrics: MonitorMetrics, port: int, host: str = "0.0.0.0") -> int:
    """Starts ``/metrics`` on ``port`` (0: a free one); returns the port."""
    server, _ = start_http_server(port, addr=host, registry=metrics.registry)
    return int(server.server_address[1])


def run_monitor(model: str, replicas: list[str], metrics_port: int, export: str | None = None,
                requests: str | None = None, rate: float = 5.0, duration: float = 0.0,
                limit: int = 0, candidates: int = 100, user_input: str | None = None,
                timeout: float = 10.0, seed: int = 0, host: str = "0.0.0.0",
                log: Callable[[str], None] = print) -> MonitorMetrics:
    """The ``steadyrank monitor`` command: parses the replicas, learns the schema (unless
    replaying recorded requests), serves /metrics and compares until stopped."""
    import signal

    endpoints = [parse_replica(text, model) for text in replicas]
    metrics = MonitorMetrics()
    if requests is not None:
        source = replayed(requests, model)
    else:
        if export is not None:
            schema = schema_from_export(export)
        else:
            with client.channel(endpoints[0].address) as channel:
                schema = schema_from_metadata(channel, endpoints[0].model, user_input, timeout)
        source = drawn(schema, candidates, seed)
    port = serve_metrics(metrics, metrics_port, host) if metrics_port >= 0 else None
    log(f"monitoring {model!r} on {', '.join(f'{e.label}={e.address}' for e in endpoints)}; "
        f"metrics on {'port ' + str(port) if port is not None else 'no port'}")
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
    monitor = Monitor(model, endpoints, metrics, timeout)
    try:
        monitor.run(source, rate, duration, limit, stop.wait, log)
    finally:
        monitor.close()
    return metrics

