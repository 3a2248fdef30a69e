"""Soak: mixed good and bad traffic while versions switch and a replica dies and comes back.

``SOAK_SECONDS`` sets the length (CI runs 60 s; ``SOAK_SECONDS=600 pytest -m slow
tests/test_soak.py`` is the 10-minute run). Zero good requests may fail, and the server's
memory may grow by less than 50 MB after the warm-up.
"""

import os
import random
import shutil
import threading
import time

import grpc
import pytest
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from steadyrank.model import layout
from steadyrank.service import client
from steadyrank.service.server import ServerConfig, ServerThread
from steadyrank.service.stubs import ranking_pb2_grpc
from tests.conftest import train_small_models
from tests.test_fuzz import _rss_mb

SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", "60"))
WARMUP_SECONDS = min(20.0, SOAK_SECONDS / 3)


@pytest.fixture(scope="module")
def models(ml100k, tmp_path_factory):
    return train_small_models(ml100k, tmp_path_factory, {"ml": 1, "ml-b": 2}, "soak")


def _good_traffic(chan, stop, failures, counts):
    rank = ranking_pb2_grpc.RankingServiceStub(chan)
    predict = prediction_service_pb2_grpc.PredictionServiceStub(chan)
    rng = random.Random(1)
    while not stop.is_set():
        try:
            if rng.random() < 0.7:
                items = rng.sample(range(1, 1683), 100)
                rank.Rank(client.rank_request("ml", rng.randint(1, 943), 10, items), timeout=10)
            else:
                request = predict_pb2.PredictRequest()
                request.model_spec.name = "ml"
                import tensorflow as tf

                request.inputs["user_id"].CopyFrom(tf.make_tensor_proto([1, 2, 3], tf.int64))
                request.inputs["item_id"].CopyFrom(tf.make_tensor_proto([4, 5, 6], tf.int64))
                predict.Predict(request, timeout=10)
            counts["good"] += 1
        except grpc.RpcError as err:
            failures.append(f"{err.code().name}: {err.details()}")


def _bad_traffic(chan, stop, codes):
    rng = random.Random(2)
    methods = ["/steadyrank.RankingService/Rank", "/tensorflow.serving.PredictionService/Predict",
               "/grpc.health.v1.Health/Check",
               "/tensorflow.serving.ModelService/GetModelStatus"]
    while not stop.is_set():
        raw = chan.unary_unary(rng.choice(methods), request_serializer=None,
                               response_deserializer=None)
        body = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 200)))
        try:
            raw(body, timeout=10)
            codes["OK"] = codes.get("OK", 0) + 1
        except grpc.RpcError as err:
            codes[err.code().name] = codes.get(err.code().name, 0) + 1


def _versions(base, stop):
    """A new version of ml every few seconds (a copy of the latest), keeping two; and ml-b
    removed for a while, then put back."""
    step = 0
    parked = base.parent / f"{base.name}-parked-b"
    while not stop.wait(4.0):
        step += 1
        latest = max(layout.versions(base / "ml"))
        shutil.copytree(base / "ml" / str(latest), base / "ml" / f".copy-{latest + 1}")
        os.rename(base / "ml" / f".copy-{latest + 1}", base / "ml" / str(latest + 1))
        for old in layout.versions(base / "ml")[:-2]:
            shutil.rmtree(base / "ml" / str(old))
        if step % 3 == 1 and (base / "ml-b").exists():
            os.rename(base / "ml-b", parked)  # the replica dies
        elif step % 3 == 0 and parked.exists():
            os.rename(parked, base / "ml-b")  # and comes back


@pytest.mark.slow
def test_soak_mixed_traffic_with_switches_and_a_dying_replica(models):
    thread = ServerThread(ServerConfig(model_base_path=models, port=0, metrics_port=-1,
                                       host="127.0.0.1", poll_seconds=0.5, churn_window=3.0,
                                       shadow_rate=0.2))
    server = thread.start()
    stop = threading.Event()
    failures: list[str] = []
    counts = {"good": 0}
    bad_codes: dict[str, int] = {}
    try:
        with client.channel(f"127.0.0.1:{server.port}") as chan:
            workers = [threading.Thread(target=_good_traffic, args=(chan, stop, failures,
                                                                      counts)),
                       threading.Thread(target=_bad_traffic, args=(chan, stop, bad_codes)),
                       threading.Thread(target=_versions, args=(models, stop))]
            for w in workers:
                w.start()
            time.sleep(WARMUP_SECONDS)
            warm = _rss_mb()
            time.sleep(SOAK_SECONDS - WARMUP_SECONDS)
            grown = _rss_mb() - warm
            stop.set()
            for w in workers:
                w.join(timeout=30)
    finally:
        stop.set()
        thread.stop(grace=1)
    # The figures bench/RESULTS.md records for the 10-minute run (shown with pytest -s).
    print(f"\nsoak {SOAK_SECONDS:.0f} s: {counts['good']} good requests, {len(failures)} failed; "
          f"bad-body codes {dict(sorted(bad_codes.items()))}; versions up to "
          f"{max(layout.versions(models / 'ml'))}; RSS after warm-up {warm:.0f} MB, "
          f"grew {grown:+.1f} MB")
    assert not failures, failures[:5]
    assert counts["good"] > 100
    assert set(bad_codes) <= {"OK", "INVALID_ARGUMENT", "NOT_FOUND"}, bad_codes
    assert max(layout.versions(models / "ml")) >= 1 + int(SOAK_SECONDS / 4) - 3
    assert grown < 50, f"RSS grew by {grown:.0f} MB after the warm-up"
