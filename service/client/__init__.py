"""Clients of a SteadyRank server: one ranking (``steadyrank rank``) and a load generator
(``steadyrank loadtest``). Both use only the public gRPC APIs.

Rank needs only grpc and the generated stubs; TensorFlow (for TF Serving's ``Predict``
messages) is imported only by the functions that call ``Predict``.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np

from steadyrank.model.artifact import layout
from steadyrank.service.client.model_inputs import (
    ModelInputs,
    random_value,
    rank_request,
    sample_rows,
)
from steadyrank.service.settings import MAX_MESSAGE_BYTES
from steadyrank.service.stubs import ranking_pb2, ranking_pb2_grpc

__all__ = ["rank_request"]  # built in steadyrank.service.client.model_inputs, used from here

# The read-only methods are safe to send again. A draining server answers UNAVAILABLE; a call
# that reaches a process just as it hands over to a successor can be answered CANCELLED by
# gRPC core before any handler saw it (grpc/grpc#41785), and a connection the kernel had
# queued on the old process's listening socket (SO_REUSEPORT) is reset when it closes, which
# the client sees as UNAVAILABLE with its channel backing off. Both codes are retried, up to
# 5 attempts (gRPC's cap) over about a second, and the channel reconnects after 100 ms (not
# gRPC's default 1 s), so the retries reach the successor.
RETRY_SERVICE_CONFIG = json.dumps({"methodConfig": [{
    "name": [{"service": "steadyrank.RankingService"},
             {"service": "tensorflow.serving.PredictionService"},
             {"service": "tensorflow.serving.ModelService", "method": "GetModelStatus"},
             {"service": "tensorflow.serving.ModelService", "method": "GetModelMetadata"}],
    "retryPolicy": {"maxAttempts": 5, "initialBackoff": "0.1s", "maxBackoff": "1s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE", "CANCELLED"]}}]})

RECONNECT_MS = 100


def channel(server: str) -> grpc.Channel:
    """An insecure channel with TF Serving's message size limits, retrying the read-only
    methods when a server process drains (``RETRY_SERVICE_CONFIG``)."""
    return grpc.insecure_channel(server, options=[
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.enable_retries", 1),
        ("grpc.initial_reconnect_backoff_ms", RECONNECT_MS),
        ("grpc.min_reconnect_backoff_ms", RECONNECT_MS),
        ("grpc.service_config", RETRY_SERVICE_CONFIG)])


def batched_request(model: str, queries: list[Any], version: int | None = None,
                    request_id: str = "") -> Any:
    """A batched ``RankRequest`` of single-query requests (from :func:`rank_request`): each
    becomes one of its ``queries``; the model and version are the batch's."""
    request = ranking_pb2.RankRequest(request_id=request_id)
    request.model_spec.name = model
    if version is not None:
        request.model_spec.version.value = version
    for single in queries:
        query = request.queries.add(user_id=single.user_id, k=single.k,
                                    string_user_id=single.string_user_id,
                                    request_id=single.request_id)
        query.candidate_item_ids.extend(single.candidate_item_ids)
        query.string_candidate_item_ids.extend(single.string_candidate_item_ids)
        for features in ("user_features", "context_features"):
            for name, value in getattr(single, features).items():
                getattr(query, features)[name].CopyFrom(value)
    return request


def format_ranking(response: Any) -> str:
    """A printable table of a ``RankResponse`` (one block per query of a batched one)."""
    lines = [f"model {response.model_spec.name} version {response.model_spec.version.value} "
             f"(replica {response.replica})"]
    lists = ([(f"query {i} {r.request_id}".rstrip(), r.items)
              for i, r in enumerate(response.results)] if response.results
             else [("", response.items)])
    for title, items in lists:
        if title:
            lines.append(title)
        lines.append(f"{'rank':>4}  {'item':>8}  {'score':>9}")
        for i, item in enumerate(items, 1):
            shown = item.string_item_id or item.item_id
            lines.append(f"{i:>4}  {shown:>8}  {item.score:>9.4f}")
    return "\n".join(lines)


def predict_signature(stub: Any, model: str, signature: str, timeout: float = 30.0,
                      **inputs: Any) -> dict[str, np.ndarray]:
    """Runs a signature through the stock ``Predict`` API; numpy outputs."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    response = stub.Predict(request, timeout=timeout)
    return {k: tf.make_ndarray(v) for k, v in response.outputs.items()}


@dataclass
class LoadResult:
    """What a load test measured."""

    seconds: float
    concurrency: int
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests
    codes: Counter = field(default_factory=Counter)  # status code name -> count
    versions: Counter = field(default_factory=Counter)  # model version -> answers
    queries: int = 1  # users ranked per request (the queries of a batched Rank)
    processes: int = 1  # client processes whose results were merged

    @staticmethod
    def merge(parts: list[LoadResult]) -> LoadResult:
        """One result of client processes that ran side by side: their latencies, codes
        and versions pooled, their concurrencies added, the longest measuring time."""
        merged = LoadResult(seconds=max(p.seconds for p in parts),
                            concurrency=sum(p.concurrency for p in parts),
                            queries=parts[0].queries, processes=len(parts))
        for part in parts:
            merged.latencies.extend(part.latencies)
            merged.codes.update(part.codes)
            merged.versions.update(part.versions)
        return merged

    @property
    def errors(self) -> int:
        """Requests that did not end OK."""
        return sum(n for code, n in self.codes.items() if code != "OK")

    @property
    def throughput(self) -> float:
        """Successful requests per second."""
        return len(self.latencies) / self.seconds if self.seconds > 0 else 0.0

    def percentile(self, q: float) -> float:
        """Latency percentile in seconds (NaN without successful requests)."""
        return float(np.percentile(self.latencies, q)) if self.latencies else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {"seconds": self.seconds, "concurrency": self.concurrency,
                "requests": sum(self.codes.values()), "errors": self.errors,
                "codes": dict(self.codes), "versions": {str(k): v for k, v in
                                                        self.versions.items()},
                "throughput_rps": self.throughput, "queries_per_request": self.queries,
                "users_per_s": self.throughput * self.queries, "processes": self.processes,
                **{f"p{q}_ms": self.percentile(q) * 1000 for q in (50, 90, 99)},
                "max_ms": max(self.latencies, default=float("nan")) * 1000}

    def table(self) -> str:
        """A printable summary."""
        d = self.to_dict()
        codes = ", ".join(f"{k} {v}" for k, v in sorted(self.codes.items()))
        return "\n".join([
            f"requests    {d['requests']} in {self.seconds:.1f} s at concurrency "
            f"{self.concurrency} ({codes})",
            f"throughput  {d['throughput_rps']:.1f} requests/s"
            + (f" ({d['users_per_s']:.1f} users/s, {self.queries} per request)"
               if self.queries > 1 else "")
            + (f" from {self.processes} client processes" if self.processes > 1 else ""),
            f"latency ms  p50 {d['p50_ms']:.2f}  p90 {d['p90_ms']:.2f}  p99 {d['p99_ms']:.2f}  "
            f"max {d['max_ms']:.2f}"])


def catalog_and_users(chan: Any, model: str) -> tuple[np.ndarray, np.ndarray | None]:
    """A ranking model's item ids and its known user ids (None without ``users``), asked
    over ``chan`` with ``Predict``."""
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    predict = prediction_service_pb2_grpc.PredictionServiceStub(chan)
    catalog = predict_signature(predict, model, layout.CATALOG)[layout.ITEM_IDS]
    try:
        users = predict_signature(predict, model, layout.USERS)[layout.USER_IDS]
    except Exception:  # noqa: BLE001  (a model without user features has no ``users``)
        users = None
    return catalog, users


def request_pool(chan: grpc.Channel, model: str, candidates: int, k: int, size: int = 2000,
                 seed: int = 0, queries: int = 1) -> list[Any]:
    """Random requests drawn from the model's schema (:mod:`.model_inputs`).

    A ranking model: Rank requests of known users, ``candidates`` random catalog items each
    (0: all), random values for the context features; with ``queries`` > 1 each request is a
    batched one of that many such users. A model without ids: Predict requests of
    ``candidates`` random rows (at least 1) on ``serving_default``.
    """
    if queries < 1:
        raise ValueError(f"--queries {queries}: must be >= 1")
    rng = np.random.default_rng(seed)
    inputs = ModelInputs.read(chan, model)
    if not inputs.ranks:
        return predict_pool(chan, model, max(1, candidates), min(size, 200), seed, inputs)
    catalog, users = catalog_and_users(chan, model)
    if candidates > catalog.size:
        raise ValueError(f"--candidates {candidates}: the model has only {catalog.size} items")
    if users is None:  # no stored user facts: any id is a user
        users = np.array([random_value(rng, inputs.user) for _ in range(100)], object)
    pool = []
    for i in range(size):
        items = (rng.choice(catalog, candidates, replace=False) if candidates else None)
        n = candidates or catalog.size
        context = {name: random_value(rng, spec) for name, spec in inputs.context.items()}
        pool.append(rank_request(model, _plain(rng.choice(users)), min(k, n),
                                 None if items is None else [_plain(v) for v in items],
                                 request_id=f"load-{i}", context=context, inputs=inputs))
    if queries > 1:
        pool = [batched_request(model, pool[i:i + queries], request_id=f"load-batch-{i}")
                for i in range(0, len(pool) - queries + 1, queries)]
    return pool


def predict_pool(chan: grpc.Channel, model: str, rows: int = 10, size: int = 200,
                 seed: int = 0, inputs: ModelInputs | None = None) -> list[Any]:
    """Random ``Predict`` requests of ``rows`` rows each on ``serving_default``: known ids
    for a ranking model, random values of each declared dtype for everything else."""
    rng = np.random.default_rng(seed)
    inputs = inputs or ModelInputs.read(chan, model)
    known = catalog_and_users(chan, model) if inputs.ranks else None
    return [predict_request(model, sample_rows(rng, inputs, rows, known))
            for _ in range(size)]


def _plain(value: Any) -> Any:
    """A numpy id as a Python int or str."""
    if isinstance(value, bytes):
        return value.decode()
    return value.item() if hasattr(value, "item") else value


def predict_request(model: str, rows: dict[str, np.ndarray],
                    signature: str = layout.SERVING_DEFAULT) -> Any:
    """A ``PredictRequest`` of rows given by input name."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    for name, values in rows.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(values))
    return request


def examples_request(kind: str, model: str, rows: dict[str, Any]) -> Any:
    """A ``RegressionRequest`` (``kind="regress"``) or ``ClassificationRequest``
    (``"classify"``) of one tf.Example per row: each int in an int64_list, each float in a
    float_list, each str in a bytes_list (a list value: all of its values)."""
    from tensorflow_serving.apis import classification_pb2, regression_pb2

    request = (regression_pb2.RegressionRequest() if kind == "regress"
               else classification_pb2.ClassificationRequest())
    request.model_spec.name = model
    for i in range(len(next(iter(rows.values())))):
        example = request.input.example_list.examples.add()
        for name, column in rows.items():
            value = column[i]
            values = list(value) if isinstance(value, list | tuple | np.ndarray) else [value]
            feature = example.features.feature[name]
            if isinstance(values[0], str | bytes):
                feature.bytes_list.value.extend(
                    v.encode() if isinstance(v, str) else v for v in values)
            elif isinstance(values[0], float | np.floating):
                feature.float_list.value.extend(float(v) for v in values)
            else:
                feature.int64_list.value.extend(int(v) for v in values)
    return request


def loadtest(server: str, model: str, concurrency: int, duration: float,
             candidates: int = 100, k: int = 10, timeout: float = 5.0, warmup: float = 1.0,
             seed: int = 0, pool: list[Any] | None = None,
             on_response: Callable[[Any], None] | None = None) -> LoadResult:
    """Keeps ``concurrency`` Rank requests in flight for ``duration`` seconds.

    The first ``warmup`` seconds are not counted. ``on_response`` sees every response.
    """
    if concurrency < 1 or duration <= 0:
        raise ValueError("concurrency must be >= 1 and duration > 0")
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    with channel(server) as chan:
        rank_stub = ranking_pb2_grpc.RankingServiceStub(chan)
        predict_stub = prediction_service_pb2_grpc.PredictionServiceStub(chan)
        if pool is None:
            pool = request_pool(chan, model, candidates, k, seed=seed)
        slots = threading.Semaphore(concurrency)
        lock = threading.Lock()
        queries = max(1, len(getattr(pool[0], "queries", []))) if pool else 1
        result = LoadResult(seconds=duration, concurrency=concurrency, queries=queries)
        started = time.monotonic()
        count_from = started + warmup
        stop_at = count_from + duration

        def send(request: Any) -> None:
            sent = time.perf_counter()
            counted = time.monotonic() >= count_from
            method = (rank_stub.Rank if isinstance(request, ranking_pb2.RankRequest)
                      else predict_stub.Predict)
            future = method.future(request, timeout=timeout)

            def done(f: grpc.Future) -> None:
                elapsed = time.perf_counter() - sent
                code = f.code()
                if counted:
                    with lock:
                        result.codes[code.name] += 1
                        if code == grpc.StatusCode.OK:
                            result.latencies.append(elapsed)
                            result.versions[f.result().model_spec.version.value] += 1
                if on_response is not None and code == grpc.StatusCode.OK:
                    on_response(f.result())
                slots.release()

            future.add_done_callback(done)

        i = 0
        while time.monotonic() < stop_at:
            slots.acquire()
            send(pool[i % len(pool)])
            i += 1
        for _ in range(concurrency):
            slots.acquire()  # wait for the requests still in flight
        result.seconds = time.monotonic() - count_from
        return result



def _loadtest_part(args: tuple[Any, ...]) -> LoadResult:
    """One client process of :func:`parallel_loadtest` (its pool arrives serialized)."""
    server, model, concurrency, duration, k, timeout, warmup, blobs, rank = args
    if rank:
        pool = [ranking_pb2.RankRequest.FromString(b) for b in blobs]
    else:
        from tensorflow_serving.apis import predict_pb2

        pool = [predict_pb2.PredictRequest.FromString(b) for b in blobs]
    return loadtest(server, model, concurrency, duration, k=k, timeout=timeout, warmup=warmup,
                    pool=pool)


def parallel_loadtest(server: str, model: str, concurrency: int, duration: float,
                      processes: int, candidates: int = 100, k: int = 10,
                      timeout: float = 5.0, warmup: float = 1.0, seed: int = 0,
                      queries: int = 1, pool: list[Any] | None = None) -> LoadResult:
    """:func:`loadtest` from ``processes`` client processes (spawned) that share
    ``concurrency`` between them, so the client can use several cores; their results are
    merged (:meth:`LoadResult.merge`)."""
    if processes < 1 or concurrency < processes:
        raise ValueError(f"--processes {processes}: must be in [1, --concurrency "
                         f"{concurrency}]")
    if pool is None:

        with channel(server) as chan:
            pool = request_pool(chan, model,
                                candidates, k, seed=seed, queries=queries)
    if processes == 1:
        return loadtest(server, model, concurrency, duration, k=k, timeout=timeout,
                        warmup=warmup, pool=pool)
    import multiprocessing

    blobs = [r.SerializeToString() for r in pool]
    shares = [concurrency // processes + (i < concurrency % processes)
              for i in range(processes)]
    rank = isinstance(pool[0], ranking_pb2.RankRequest)
    jobs = [(server, model, share, duration, k, timeout, warmup, blobs[i::processes] or blobs,
             rank) for i, share in enumerate(shares)]
    with multiprocessing.get_context("spawn").Pool(processes) as workers:
        return LoadResult.merge(workers.map(_loadtest_part, jobs))
