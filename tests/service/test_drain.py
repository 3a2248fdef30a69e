"""A clean drain: after SIGTERM, ``serve --workers 2`` answers new calls UNAVAILABLE (which
stock clients retry elsewhere), never CANCELLED, and finishes the calls in flight."""

import signal
import threading
import time
from collections import Counter

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from tests.conftest import kill_serve, serve_ports, start_serve, train_small_models, wait_for

CLIENTS = 6
AFTER_SIGNAL = 2.5  # seconds the clients keep calling after the signal


@pytest.fixture(scope="module")
def models(tiny_data, tmp_path_factory):
    return train_small_models(tiny_data, tmp_path_factory, prefix="drain-models")


def _predict() -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "ml"
    request.inputs["user_id"].CopyFrom(tf.make_tensor_proto(np.arange(1, 33, dtype=np.int64)))
    request.inputs["item_id"].CopyFrom(tf.make_tensor_proto(np.arange(1, 33, dtype=np.int64)))
    return request


def _call_until(port: int, stop: threading.Event, calls: list, lock: threading.Lock) -> None:
    """Stock Predict calls back to back on a plain channel (no retry policy): each call's
    start time and code."""
    request = _predict()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as chan:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(chan)
        while not stop.is_set():
            started = time.monotonic()
            try:
                stub.Predict(request, timeout=30)
                code = "OK"
            except grpc.RpcError as err:
                code = err.code().name
            with lock:
                calls.append((started, code))


def test_calls_after_sigterm_get_unavailable_never_cancelled(models, tmp_path):
    log = tmp_path / "serve.log"
    proc = start_serve(log, "--workers", "2", "--model-base-path", str(models),
                       "--metrics-port", "-1", "--shutdown-grace", "20")
    try:
        port, _ = serve_ports(log)
        calls: list = []
        lock, stop = threading.Lock(), threading.Event()
        threads = [threading.Thread(target=_call_until, args=(port, stop, calls, lock))
                   for _ in range(CLIENTS)]
        for t in threads:
            t.start()
        assert wait_for(lambda: sum(c == "OK" for _, c in calls) >= 200, timeout=120)
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        time.sleep(AFTER_SIGNAL)
        stop.set()
        for t in threads:
            t.join(timeout=60)
        assert proc.wait(timeout=90) == 0, log.read_text()[-3000:]
    finally:
        kill_serve(proc)
    before = Counter(code for started, code in calls if started < signalled)
    after = Counter(code for started, code in calls if started >= signalled)
    assert set(before) == {"OK"}, before
    assert sum(after.values()) >= 200, after  # hundreds of calls started after the signal
    assert after["UNAVAILABLE"] > 0, after  # the workers refused them while draining
    assert set(after) <= {"OK", "UNAVAILABLE"}, after  # never CANCELLED, nothing else
    assert log.read_text().count("steadyrank.server: stopped") == 2
