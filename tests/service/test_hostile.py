"""The server under hostile and oversized input: codes, messages, addresses, isolation,
retries after a rename, and every path to the model bounded by --max-queue."""

import asyncio
import shutil
import socket
import statistics
import threading
import time

import grpc
import numpy as np
import pytest
from tensorflow.core.framework import tensor_shape_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from steadyrank.service import client
from steadyrank.service.serve.batching import Batcher, DirectScorer
from steadyrank.service.serve.manager import fingerprint
from steadyrank.service.serve.server import ServerConfig, ServerThread
from steadyrank.service.serve.status import ServiceError
from steadyrank.service.serve.telemetry import ServerMetrics
from steadyrank.service.stubs import ranking_pb2, ranking_pb2_grpc
from tests.conftest import declared_shape_request, train_small_models, wait_for


@pytest.fixture(scope="module")
def models(tiny_data, tmp_path_factory):
    return train_small_models(tiny_data, tmp_path_factory, prefix="hostile")


@pytest.fixture(scope="module")
def server(models):
    thread = ServerThread(ServerConfig(model_base_path=models, port=0, metrics_port=0,
                                       host="127.0.0.1", poll_seconds=0.2,
                                       handshake_timeout=1.0, shadow_rate=0.0))
    srv = thread.start()
    yield srv
    thread.stop(grace=1)


def _predict(chan, request):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(chan)
    with pytest.raises(grpc.RpcError) as err:
        stub.Predict(request, timeout=10)
    return err.value


def test_a_very_long_model_name_is_not_found_with_a_short_message(chan, models):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "x" * 20_000
    err = _predict(chan, request)
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert len(err.details()) < 200 and "20000 characters" in err.details()
    assert str(models) not in err.details()  # no server paths


def test_unknown_dtype_enums_and_internal_signatures_are_invalid_argument(chan):
    for dtype in (999, -1, 2**31 - 1):
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "ml"
        for key in ("user_id", "item_id"):
            request.inputs[key].dtype = dtype
            request.inputs[key].tensor_shape.dim.append(
                tensor_shape_pb2.TensorShapeProto.Dim(size=1))
        err = _predict(chan, request)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, dtype
        assert f"DataType {dtype}" in err.details()
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "ml"
    request.model_spec.signature_name = "__saved_model_init_op"
    err = _predict(chan, request)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "no signature '__saved_model_init_op' to run" in err.details()


def test_metrics_endpoint_follows_the_host(server):
    assert server._http.server_address[0] == "127.0.0.1"


def test_a_connection_that_never_speaks_http2_is_closed(server):
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    started = time.monotonic()
    try:
        sock.settimeout(10)
        data = sock.recv(100)  # the server gives up on the handshake and closes
        while data:
            data = sock.recv(100)
    except (ConnectionResetError, TimeoutError):
        pass
    finally:
        sock.close()
    assert time.monotonic() - started < 8  # --handshake-timeout 1 s (well before 10 s)


def test_a_large_request_does_not_stall_small_ones(chan):
    rank = ranking_pb2_grpc.RankingServiceStub(chan)
    small = client.rank_request("ml", 1, 5, candidates=list(range(1, 51)))

    def latencies(n: int) -> list[float]:
        out = []
        for _ in range(n):
            started = time.perf_counter()
            rank.Rank(small, timeout=10)
            out.append(time.perf_counter() - started)
        return out

    idle = statistics.median(latencies(40))
    big = ranking_pb2.RankRequest(k=1, candidate_item_ids=range(2**40, 2**40 + 3_000_000))
    big.model_spec.name = "ml"
    body = big.SerializeToString()  # ~18 MB
    stop = threading.Event()
    sent = []

    def hammer():
        raw = chan.unary_unary("/steadyrank.RankingService/Rank", request_serializer=None,
                               response_deserializer=None)
        while not stop.is_set():
            try:
                raw(body, timeout=30)
            except grpc.RpcError as err:
                sent.append((err.code(), "larger than any valid Rank request" in
                             (err.details() or "")))

    worker = threading.Thread(target=hammer)
    worker.start()
    try:
        wait_for(lambda: len(sent) >= 1, timeout=30)
        busy = latencies(40)
    finally:
        stop.set()
        worker.join()
    # Refused by its size before it is parsed (3,000,000 candidates: over every bound).
    assert set(sent) == {(grpc.StatusCode.INVALID_ARGUMENT, True)}
    assert statistics.median(busy) - idle < 0.05, (idle, statistics.median(busy))


def test_a_version_fixed_by_a_rename_is_retried(tmp_path):
    folder = tmp_path / "1"
    folder.mkdir()
    (folder / "saved_model.pbx").write_text("model")
    before = fingerprint(folder)
    (folder / "saved_model.pbx").rename(folder / "saved_model.pb")
    assert fingerprint(folder) != before  # same count, bytes and mtime; another name
    shutil.rmtree(folder)


@pytest.mark.parametrize("kind", ["batched", "direct"])
def test_unbatched_model_calls_obey_the_queue_bound(kind):
    metrics = ServerMetrics()
    scorer = (Batcher(metrics, max_queue=2) if kind == "batched"
              else DirectScorer(metrics, threads=1, max_queue=2))
    gate = threading.Event()

    class Slow:
        name = "m"

        def call(self, signature, inputs):
            gate.wait(10)
            return {"scores": np.zeros(1, np.float32)}

    async def scenario():
        await scorer.start()
        calls = [asyncio.ensure_future(scorer.call(Slow(), "rank_with_features", {}))
                 for _ in range(2)]
        await asyncio.sleep(0.05)
        with pytest.raises(ServiceError) as err:
            await scorer.call(Slow(), "rank_with_features", {})
        assert err.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "--max-queue" in err.value.message
        gate.set()
        await asyncio.gather(*calls)
        await scorer.stop()

    asyncio.run(scenario())
    assert metrics.queue_rejections._value.get() == 1


def test_declared_shapes_fill_only_within_the_limit(chan):
    request = declared_shape_request(500_000)
    err = _predict(chan, request)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "more than 100000 elements (server flag --max-request-elements)" in err.details()
    # Within the limit, TensorFlow's fill-from-one-value still works.
    for key in ("user_id", "item_id"):
        request.inputs[key].tensor_shape.dim[0].size = 3
    ok = prediction_service_pb2_grpc.PredictionServiceStub(chan).Predict(request, timeout=10)
    assert len(ok.outputs["score"].float_val or ok.outputs["score"].tensor_content) > 0
