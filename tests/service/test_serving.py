"""The gRPC server end to end: stock TF Serving clients, Rank, errors, metrics, versions."""

import shutil
import threading
import time
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from steadyrank.model.artifact import reader
from steadyrank.service import client
from steadyrank.service.serve.server import ServerConfig, ServerThread
from steadyrank.service.stubs import ranking_pb2_grpc
from tests.conftest import train_small_models, wait_for

MAX_CANDIDATES = 300


@pytest.fixture(scope="module")
def models(tiny_data, tmp_path_factory):
    """models/ml (seed 1) and models/ml-b (seed 2), one version each."""
    return train_small_models(tiny_data, tmp_path_factory, {"ml": 1, "ml-b": 2})


@pytest.fixture(scope="module")
def local(models):
    """The primary export loaded in this process (the reference)."""
    return reader.load(models / "ml")


def start(base, **settings):
    config = ServerConfig(model_base_path=base, port=0, metrics_port=0, host="127.0.0.1",
                          **{"poll_seconds": 0.2, "max_candidates": MAX_CANDIDATES,
                             **settings})
    thread = ServerThread(config)
    return thread, thread.start()


@pytest.fixture(scope="module")
def server(models):
    thread, srv = start(models)
    yield srv
    thread.stop(grace=1)


@pytest.fixture(scope="module")
def predict_stub(chan):
    return prediction_service_pb2_grpc.PredictionServiceStub(chan)


@pytest.fixture(scope="module")
def rank_stub(chan):
    return ranking_pb2_grpc.RankingServiceStub(chan)


def pairs(local, n=64, seed=0):
    rng = np.random.default_rng(seed)
    users = predict_users(local)
    return (rng.choice(users, n).astype(np.int64),
            rng.choice(local.item_ids, n).astype(np.int64))


def predict_users(local):
    return local.module.signatures["users"]()["user_ids"].numpy()


def test_stock_predict_client_gets_the_in_process_scores(predict_stub, local):
    users, items = pairs(local)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "ml"
    request.inputs["user_id"].CopyFrom(tf.make_tensor_proto(users))
    request.inputs["item_id"].CopyFrom(tf.make_tensor_proto(items))
    response = predict_stub.Predict(request, timeout=30)
    assert response.model_spec.name == "ml" and response.model_spec.version.value == 1
    assert response.model_spec.signature_name == "serving_default"
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["score"]),
                               local.score_pairs(users, items), rtol=1e-6)


def test_predict_runs_other_signatures(predict_stub, local):
    catalog = client.predict_signature(predict_stub, "ml", "catalog")["item_ids"]
    np.testing.assert_array_equal(catalog, local.item_ids)
    users, items = pairs(local, 20)
    scores = client.predict_signature(predict_stub, "ml", "rank", user_id=users[0],
                                      item_ids=items)["scores"]
    np.testing.assert_allclose(scores, local.rank_items(int(users[0]), items), rtol=1e-6)


def test_regress_on_tf_examples(predict_stub, local):
    users, items = pairs(local, 5)
    request = client.examples_request("regress", "ml", {"user_id": users, "item_id": items})
    response = predict_stub.Regress(request, timeout=30)
    np.testing.assert_allclose([r.value for r in response.result.regressions],
                               local.score_pairs(users, items), rtol=1e-6)


def test_model_metadata_has_the_signatures(predict_stub):
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "ml"
    response = predict_stub.GetModelMetadata(request, timeout=10)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)
    default = signatures.signature_def["serving_default"]
    assert set(default.inputs) == {"user_id", "item_id"}
    assert set(default.outputs) == {"score"}
    assert {"rank", "rank_with_features", "catalog", "users"} <= set(signatures.signature_def)


def test_model_status(chan):
    stub = model_service_pb2_grpc.ModelServiceStub(chan)
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "ml"
    [status] = stub.GetModelStatus(request, timeout=10).model_version_status
    assert status.version == 1
    assert status.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert status.status.error_code == 0


def brute_force(local, user, items, k):
    scores = local.score_pairs(np.full(len(items), user), items)
    order = sorted(range(len(items)), key=lambda j: (-scores[j], j))[:k]
    return [int(items[j]) for j in order], scores[order]


def test_rank_matches_brute_force(rank_stub, local):
    rng = np.random.default_rng(1)
    users = predict_users(local)
    for trial in range(5):
        user = int(rng.choice(users))
        items = rng.choice(local.item_ids, 100, replace=False)
        response = rank_stub.Rank(client.rank_request("ml", user, 10, items,
                                                      request_id=f"t{trial}"), timeout=30)
        want_ids, want_scores = brute_force(local, user, items, 10)
        assert [i.item_id for i in response.items] == want_ids
        np.testing.assert_allclose([i.score for i in response.items], want_scores, rtol=1e-6)
        assert response.request_id == f"t{trial}"
        assert response.replica == "a" and response.model_spec.version.value == 1


def test_rank_defaults_to_the_whole_catalog(rank_stub, local):
    user = int(predict_users(local)[3])
    response = rank_stub.Rank(client.rank_request("ml", user, 25), timeout=30)
    assert [i.item_id for i in response.items] == brute_force(local, user, local.item_ids,
                                                              25)[0]


def test_rank_with_user_features_matches_the_in_process_signature(rank_stub, local):
    items = local.item_ids[:50]
    features = {"gender": "F", "occupation": "writer", "zip": "94110", "age": 31}
    response = rank_stub.Rank(client.rank_request("ml", 123456, 5, items, features),
                              timeout=30)
    scores = local.module.signatures["rank_with_features"](
        user_id=tf.constant(123456, tf.int64), item_ids=tf.constant(items),
        gender=tf.constant("F"), occupation=tf.constant("writer"), zip=tf.constant("94110"),
        age=tf.constant(31, tf.int64))["scores"].numpy()
    order = np.argsort(-scores, kind="stable")[:5]
    assert [i.item_id for i in response.items] == [int(items[j]) for j in order]


def test_batched_rank_answers_each_query_as_its_single_request_would(rank_stub, local):
    """A batched Rank (stored-feature users, whole-catalog, and new-user queries mixed) gives
    every query exactly the list a single-query request gets, in the order of the queries."""
    rng = np.random.default_rng(7)
    users = predict_users(local)
    singles = [client.rank_request("ml", int(rng.choice(users)), 5 + i,
                                   rng.choice(local.item_ids, 40 + 10 * i, replace=False),
                                   request_id=f"q{i}") for i in range(6)]
    singles.append(client.rank_request("ml", int(users[2]), 7, request_id="catalog"))
    singles.append(client.rank_request("ml", 123456, 4, local.item_ids[:30],
                                       {"gender": "M", "occupation": "artist",
                                        "zip": "10001", "age": 40}, request_id="new"))
    batch = rank_stub.Rank(client.batched_request("ml", singles, request_id="b1"), timeout=30)
    assert batch.request_id == "b1" and not batch.items
    assert [r.request_id for r in batch.results] == [q.request_id for q in singles]
    for single, result in zip(singles, batch.results, strict=True):
        alone = rank_stub.Rank(single, timeout=30)
        assert [i.item_id for i in result.items] == [i.item_id for i in alone.items]
        np.testing.assert_allclose([i.score for i in result.items],
                                   [i.score for i in alone.items], rtol=1e-6)
    want, _ = brute_force(local, singles[0].user_id, singles[0].candidate_item_ids, 5)
    assert [i.item_id for i in batch.results[0].items] == want


@pytest.mark.parametrize("mutate, message", [
    (lambda r: setattr(r, "user_id", 5), "user_id: set it in each of queries"),
    (lambda r: setattr(r, "k", 3), "k: set it in each of queries"),
    (lambda r: setattr(r.queries[2], "k", 0), "queries[2].k: 0 is out of range"),
    (lambda r: r.queries[1].user_features["gender"].MergeFrom(
        client.ranking_pb2.FeatureValue(string_value="F")), "queries[1].user_features"),
    (lambda r: r.queries.extend([r.queries[0]] * 300), "303 queries, at most 256"),
    # 200 whole-catalog queries: 200 x the catalog > 100,000 pairs (--max-rank-pairs)
    (lambda r: [r.queries.add(user_id=r.queries[0].user_id, k=1) for _ in range(200)],
     "(user, item) pairs to score, at most 100000 (server flag --max-rank-pairs)"),
])
def test_bad_batched_rank_requests_name_the_query_and_field(rank_stub, local, mutate,
                                                            message):
    users = predict_users(local)
    request = client.batched_request("ml", [
        client.rank_request("ml", int(users[i]), 3, local.item_ids[:20]) for i in range(3)])
    mutate(request)
    with pytest.raises(grpc.RpcError) as err:
        rank_stub.Rank(request, timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in err.value.details()


def test_the_second_replica_answers_as_b(rank_stub, local):
    response = rank_stub.Rank(client.rank_request("ml-b", int(predict_users(local)[0]), 3),
                              timeout=30)
    assert response.replica == "b" and response.model_spec.name == "ml-b"


def _predict(name="ml", signature="", version=None, label="", output_filter=(), **inputs):
    request = predict_pb2.PredictRequest(output_filter=list(output_filter))
    request.model_spec.name = name
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    if label:
        request.model_spec.version_label = label
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    return request


I64 = np.array([1, 2], np.int64)
INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
PREDICT_ERRORS = [
    (_predict("nope", user_id=I64, item_id=I64), NOT_FOUND, "model 'nope' is not served"),
    (_predict(version=9, user_id=I64, item_id=I64), NOT_FOUND, "version 9 is not loaded"),
    (_predict(label="stable", user_id=I64, item_id=I64), INVALID, "version_label"),
    (_predict(signature="nope", user_id=I64), INVALID, "no signature 'nope'"),
    (_predict(user_id=I64), INVALID, "missing input 'item_id'"),
    (_predict(user_id=I64, item_id=I64, color=I64), INVALID, "unknown input 'color'"),
    (_predict(user_id=np.array([1, 2], np.int32), item_id=I64), INVALID,
     "inputs['user_id']: dtype DT_INT32, signature 'serving_default' expects DT_INT64"),
    (_predict(user_id=I64.reshape(1, 2), item_id=I64), INVALID,
     "inputs['user_id']: shape [1, 2], signature 'serving_default' expects [?]"),
    (_predict(user_id=I64, item_id=np.array([1, 2, 3], np.int64)), INVALID,
     "batch inputs must have the same length, got item_id 3, user_id 2"),
    (_predict(output_filter=["nope"], user_id=I64, item_id=I64), INVALID,
     "output_filter: unknown output 'nope'"),
]


@pytest.mark.parametrize("request_, code, message", PREDICT_ERRORS)
def test_predict_bad_input_gets_its_code_and_names_the_field(predict_stub, request_, code,
                                                             message):
    with pytest.raises(grpc.RpcError) as err:
        predict_stub.Predict(request_, timeout=10)
    assert err.value.code() == code
    assert message in err.value.details()


def _rank(name="ml", user=1, k=3, candidates=(1, 2, 3, 4), features=None):
    return client.rank_request(name, user, k, candidates, features)


FEATURES = {"gender": "M", "occupation": "writer", "zip": "10001", "age": 30}
RANK_ERRORS = [
    (_rank(name=""), INVALID, "model_spec.name: required"),
    (_rank(name="nope"), NOT_FOUND, "model 'nope' is not served"),
    (_rank(k=0), INVALID, "k: 0 is out of range [1, 4]"),
    (_rank(k=5), INVALID, "k: 5 is out of range [1, 4]"),
    (_rank(candidates=range(1, MAX_CANDIDATES + 2)), INVALID,
     f"candidate_item_ids: {MAX_CANDIDATES + 1} candidates, at most {MAX_CANDIDATES}"),
    (_rank(candidates=(1, 2, 2)), INVALID, "candidate_item_ids: item 2 is listed more than"),
    (_rank(features={**FEATURES, "height": "tall"}), INVALID,
     "user_features: unknown feature 'height'"),
    (_rank(features={k: v for k, v in FEATURES.items() if k != "zip"}), INVALID,
     "user_features: missing feature 'zip'"),
    (_rank(features={**FEATURES, "age": "thirty"}), INVALID,
     "user_features['age']: got string_value, expected one int64"),
]


@pytest.mark.parametrize("request_, code, message", RANK_ERRORS)
def test_rank_bad_input_gets_its_code_and_names_the_field(rank_stub, request_, code, message):
    with pytest.raises(grpc.RpcError) as err:
        rank_stub.Rank(request_, timeout=10)
    assert err.value.code() == code
    assert message in err.value.details()


def test_other_bad_requests(predict_stub, chan):
    status = get_model_status_pb2.GetModelStatusRequest()
    status.model_spec.name = "nope"
    empty_regress = regression_pb2.RegressionRequest()
    empty_regress.model_spec.name = "ml"
    regress = regression_pb2.RegressionRequest()
    regress.model_spec.name = "ml"
    example = regress.input.example_list.examples.add()
    example.features.feature["user_id"].int64_list.value.append(1)
    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name = "ml"
    classify.input.example_list.examples.append(example)
    status_stub = model_service_pb2_grpc.ModelServiceStub(chan)
    cases = [
        (predict_stub.GetModelMetadata, get_model_metadata_pb2.GetModelMetadataRequest(),
         INVALID, "metadata_field: empty"),
        (predict_stub.Classify, classify, grpc.StatusCode.UNIMPLEMENTED,
         "Classify: model 'ml' has task 'rating'; use Regress"),
        (predict_stub.Regress, empty_regress, INVALID, "input: empty"),
        (predict_stub.Regress, regress, INVALID,
         "examples: Feature: item_id (data type: int64) is required but could not be found"),
        (status_stub.GetModelStatus, get_model_status_pb2.GetModelStatusRequest(), INVALID,
         "model_spec.name: required"),
        (status_stub.GetModelStatus, status, NOT_FOUND, "model 'nope' is not served"),
    ]
    for method, request, code, message in cases:
        with pytest.raises(grpc.RpcError) as err:
            method(request, timeout=10)
        assert err.value.code() == code, message
        assert message in err.value.details()


def test_health_and_reflection(chan):
    check = health_pb2_grpc.HealthStub(chan).Check
    for service in ("", "tensorflow.serving.PredictionService", "steadyrank.RankingService"):
        status = check(health_pb2.HealthCheckRequest(service=service), timeout=5).status
        assert status == health_pb2.HealthCheckResponse.SERVING
    stub = reflection_pb2_grpc.ServerReflectionStub(chan)
    [reply] = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
    names = {s.name for s in reply.list_services_response.service}
    assert {"tensorflow.serving.PredictionService", "tensorflow.serving.ModelService",
            "steadyrank.RankingService", "grpc.health.v1.Health"} <= names


def test_metrics_endpoint(server, rank_stub, local):
    rank_stub.Rank(client.rank_request("ml", int(predict_users(local)[0]), 3), timeout=10)
    with pytest.raises(grpc.RpcError):
        rank_stub.Rank(client.rank_request("ml", 1, 0), timeout=10)
    text = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics",
                                  timeout=10).read().decode()
    assert 'steadyrank_requests_total{code="OK",method="Rank"}' in text
    assert 'steadyrank_requests_total{code="INVALID_ARGUMENT",method="Rank"}' in text
    assert 'steadyrank_request_duration_seconds_bucket{le="0.0001",method="Rank"}' in text
    assert "steadyrank_batch_rows_bucket" in text and "steadyrank_batch_queue_depth" in text
    assert ('steadyrank_model_version_state{error="0",model="ml",state="AVAILABLE",'
            'version="1"} 1.0') in text


def copy_version(base, name, source, target, break_it=False):
    """Copies a version folder into place atomically (hidden temp folder, then rename)."""
    tmp = base / name / f".tmp-copy-{target}"
    shutil.copytree(base / name / str(source), tmp)
    if break_it:
        (tmp / "saved_model.pb").write_bytes(b"\x00 not a SavedModel")
    tmp.rename(base / name / str(target))



def test_version_switch_under_load_and_corrupt_version(models, tmp_path):
    base = tmp_path / "models"
    shutil.copytree(models / "ml", base / "ml")
    thread, srv = start(base)
    address = f"127.0.0.1:{srv.port}"
    try:
        seen = []
        results = {}
        load = threading.Thread(target=lambda: results.setdefault("load", client.loadtest(
            address, "ml", concurrency=8, duration=8, warmup=0.5, candidates=50,
            on_response=lambda r: seen.append(r.model_spec.version.value))))
        load.start()
        time.sleep(2)
        copy_version(base, "ml", 1, 2)
        assert wait_for(lambda: seen and seen[-1] == 2, timeout=20), "no switch to version 2"
        load.join()
        result = results["load"]
        assert result.errors == 0 and result.codes["OK"] > 0, result.codes
        assert set(result.versions) == {1, 2}

        copy_version(base, "ml", 1, 3, break_it=True)
        status_stub = model_service_pb2_grpc.ModelServiceStub(grpc.insecure_channel(address))
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = "ml"

        def version_3():
            got = status_stub.GetModelStatus(request, timeout=5).model_version_status
            return next((s for s in got if s.version == 3 and s.status.error_message), None)

        assert wait_for(version_3, timeout=30)
        assert version_3().state == get_model_status_pb2.ModelVersionStatus.END
        with client.channel(address) as chan:
            response = ranking_pb2_grpc.RankingServiceStub(chan).Rank(
                client.rank_request("ml", 1, 3), timeout=10)
        assert response.model_spec.version.value == 2  # still the good version
    finally:
        thread.stop(grace=1)


def test_full_queue_and_deadlines_end_to_end(models):
    thread, srv = start(models, max_queue=1, max_wait_ms=300)
    try:
        with client.channel(f"127.0.0.1:{srv.port}") as chan:
            stub = ranking_pb2_grpc.RankingServiceStub(chan)
            request = client.rank_request("ml", 1, 3, (1, 2, 3))
            futures = [stub.Rank.future(request, timeout=10) for _ in range(4)]
            codes = sorted(f.code().name for f in futures)
            assert "OK" in codes and "RESOURCE_EXHAUSTED" in codes, codes
            with pytest.raises(grpc.RpcError) as err:
                stub.Rank(request, timeout=0.05)  # the batch waits 300 ms to fill up
            assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert stub.Rank(request, timeout=10).items  # still serving
        text = urllib.request.urlopen(f"http://127.0.0.1:{srv.metrics_port}/metrics",
                                      timeout=10).read().decode()
        assert "steadyrank_batch_queue_rejections_total 0.0" not in text
    finally:
        thread.stop(grace=1)


def test_cli_rank_and_loadtest(server, local, capsys):
    from steadyrank.cli.main import main

    address = f"127.0.0.1:{server.port}"
    user = int(predict_users(local)[0])
    assert main(["rank", "--server", address, "--model", "ml", "--user", str(user),
                 "--k", "4"]) == 0
    out = capsys.readouterr().out
    assert "model ml version 1 (replica a)" in out
    want = brute_force(local, user, local.item_ids, 4)[0]
    assert [int(line.split()[1]) for line in out.splitlines()[2:]] == want
    assert main(["rank", "--server", address, "--model", "nope", "--user", "1"]) == 1
    assert "NOT_FOUND: model 'nope' is not served" in capsys.readouterr().err
    assert main(["rank", "--server", address, "--model", "ml", "--user", "1",
                 "--feature", "age"]) == 2
    assert "--feature 'age': expected NAME=VALUE" in capsys.readouterr().err
    assert main(["loadtest", "--server", address, "--model", "ml", "--concurrency", "4",
                 "--duration", "1", "--warmup", "0.2"]) == 0
    out = capsys.readouterr().out
    assert "throughput" in out and "p99" in out and "OK " in out
    assert main(["loadtest", "--server", address, "--model", "ml", "--candidates",
                 "100000", "--duration", "1"]) == 2
    assert "--candidates 100000: the model has only" in capsys.readouterr().err


def test_cli_serve_refuses_a_missing_model_folder(tmp_path, capsys):
    from steadyrank.cli.main import main

    assert main(["serve", "--model-base-path", str(tmp_path / "nope")]) == 2
    assert f"--model-base-path {tmp_path / 'nope'}: not a folder" in capsys.readouterr().err


def test_sigterm_drains_in_flight_requests(models, tmp_path):
    import os
    import signal
    import subprocess
    import sys

    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "steadyrank.cli", "serve", "--model-base-path", str(models),
             "--port", "0", "--metrics-port", "-1", "--host", "127.0.0.1",
             "--max-wait-ms", "500"], stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert wait_for(lambda: "gRPC on port" in log.read_text(), timeout=120), log.read_text()
        port = int(log.read_text().split("gRPC on port ")[1].split(",")[0])
        with client.channel(f"127.0.0.1:{port}") as chan:
            stub = ranking_pb2_grpc.RankingServiceStub(chan)
            futures = [stub.Rank.future(client.rank_request("ml", 1, 3, (1, 2, 3, 4)),
                                        timeout=30) for _ in range(6)]
            time.sleep(0.2)  # in flight: the batch waits 500 ms to fill up
            proc.send_signal(signal.SIGTERM)
            assert [f.code() for f in futures] == [grpc.StatusCode.OK] * 6
            assert all(len(f.result().items) == 3 for f in futures)
        assert proc.wait(timeout=60) == 0
        assert "stopped" in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()


def _shadow_pairs(srv, model="ml"):
    return srv.metrics.shadow_pairs.labels(model)._value.get()


def _mean(histogram, *labels):
    child = histogram.labels(*labels)
    count = sum(b.get() for b in child._buckets)
    return child._sum.get() / count, count


def test_live_replica_metrics_match_offline_metrics(models):
    from steadyrank.model.measures import metrics as repro

    thread, srv = start(models, shadow_rate=1.0)
    try:
        a, b = reader.load(models / "ml"), reader.load(models / "ml-b")
        rng = np.random.default_rng(5)
        users = predict_users(a)
        expected = {"rel": [], "abs": [], "swap5": []}
        with client.channel(f"127.0.0.1:{srv.port}") as chan:
            stub = ranking_pb2_grpc.RankingServiceStub(chan)
            batch = []  # the last 10 go as one batched Rank: each query is one request pair
            for i in range(20):
                user, items = int(rng.choice(users)), rng.choice(a.item_ids, 60, replace=False)
                if i < 10:
                    stub.Rank(client.rank_request("ml", user, 5, items), timeout=30)
                else:
                    batch.append(client.rank_request("ml", user, 5, items))
                pa, pb = a.rank_items(user, items), b.rank_items(user, items)
                expected["rel"].append(repro.relative_pd(pa, pb))
                expected["abs"].append(repro.absolute_pd(pa, pb))
                expected["swap5"].append(repro.topk_swap_rate(pa, pb, 5))
            stub.Rank(client.batched_request("ml", batch), timeout=30)
        assert wait_for(lambda: _shadow_pairs(srv) == 20, timeout=30)
        m = srv.metrics
        rel, count = _mean(m.replica.pd_relative, "ml", "1", "1")
        assert count == 20 and rel == pytest.approx(np.mean(expected["rel"]), rel=1e-4)
        assert rel > 0  # two seeds: the replicas disagree
        assert _mean(m.replica.pd_absolute, "ml", "1", "1")[0] == pytest.approx(
            np.mean(expected["abs"]), rel=1e-4)
        assert _mean(m.replica.topk_swap, "ml", "1", "1", "5")[0] == pytest.approx(
            np.mean(expected["swap5"]))
        text = urllib.request.urlopen(f"http://127.0.0.1:{srv.metrics_port}/metrics",
                                      timeout=10).read().decode()
        for name in ("steadyrank_replica_prediction_difference_relative_bucket",
                     "steadyrank_replica_prediction_difference_absolute_sum",
                     'steadyrank_replica_topk_swap_rate_count{k="10",model="ml"',
                     "steadyrank_replica_kendall_tau_bucket",
                     'steadyrank_shadow_pairs_total{model="ml"} 20.0',
                     'steadyrank_replica_up{model="ml"} 1.0'):
            assert name in text, name
    finally:
        thread.stop(grace=1)


def test_identical_replicas_show_zero_difference(models, tmp_path):
    base = tmp_path / "models"
    shutil.copytree(models / "ml", base / "ml")
    shutil.copytree(models / "ml", base / "ml-b")
    thread, srv = start(base, shadow_rate=1.0)
    try:
        with client.channel(f"127.0.0.1:{srv.port}") as chan:
            stub = ranking_pb2_grpc.RankingServiceStub(chan)
            for user in (1, 2, 3):
                stub.Rank(client.rank_request("ml", user, 10), timeout=30)
        assert wait_for(lambda: _shadow_pairs(srv) == 3, timeout=30)
        m = srv.metrics
        assert _mean(m.replica.pd_relative, "ml", "1", "1") == (0.0, 3)
        assert _mean(m.replica.topk_swap, "ml", "1", "1", "10") == (0.0, 3)
        assert _mean(m.replica.kendall_tau, "ml", "1", "1")[0] == pytest.approx(1.0)
    finally:
        thread.stop(grace=1)


@pytest.mark.parametrize("value", [
    np.array([[1.5, -2.0], [0.0, 3.25]], np.float32), np.array([7, -9, 2**40], np.int64),
    np.array([1, 2, 3], np.int32), np.array([0.1, 0.2], np.float64),
    np.array([b"a", b"", b"\xff\x00", "é".encode()], object),
    np.array([[b"x", b"yy"], [b"zzz", b"w"]], object), np.array(5, np.int64),
    np.array([True, False]), np.array([], np.float32)])
def test_to_array_equals_tensorflow_for_every_layout(value):
    from steadyrank.service.serve.tensors import to_array

    for proto in (tf.make_tensor_proto(value), tf.make_tensor_proto(
            value.reshape(-1)[:1], shape=value.shape) if value.size else None):
        if proto is None:
            continue
        want = tf.make_ndarray(proto)
        got = to_array(proto)
        assert got.dtype == want.dtype and got.shape == want.shape
        assert got.tolist() == want.tolist()


@pytest.mark.parametrize("field,dtype,values", [
    ("float_val", tf.float32, [1.5, -2.0, 0.0, 3.25]), ("int64_val", tf.int64, [7, -9, 2**40, 0]),
    ("double_val", tf.float64, [0.1, 0.2, 0.3, 0.4]), ("string_val", tf.string,
                                                        [b"a", b"", b"\xff", b"zz"])])
def test_to_array_reads_listed_values_as_tensorflow_does(field, dtype, values):
    """Values listed one by one in ``*_val`` (not packed in tensor_content) decode alike."""
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2

    from steadyrank.service.serve.tensors import to_array

    proto = tensor_pb2.TensorProto(dtype=dtype.as_datatype_enum, tensor_shape=(
        tensor_shape_pb2.TensorShapeProto(dim=[{"size": 2}, {"size": 2}])), **{field: values})
    want, got = tf.make_ndarray(proto), to_array(proto)
    assert got.dtype == want.dtype and got.shape == want.shape == (2, 2)
    assert got.tolist() == want.tolist()


def test_string_bytes_are_counted_exactly_near_the_limit():
    """The serialized size only decides whether to count: strings of 900 bytes in a proto
    over 1,000 bytes pass a 1,000-byte limit; 1,080 bytes of strings do not."""
    from steadyrank.service.serve.status import ServiceError
    from steadyrank.service.serve.tensors import Limits, check_declared

    limits = Limits(max_string_bytes=1000)
    fits = tf.make_tensor_proto(np.array([b"123456789"] * 100, object))
    assert fits.ByteSize() > 1000
    assert check_declared("c", fits, limits) == 100
    over = tf.make_tensor_proto(np.array([b"123456789"] * 120, object))
    with pytest.raises(ServiceError, match=r"inputs\['c'\]: 1080 bytes of strings, at most "
                                           r"1000 \(server flag --max-string-bytes\)"):
        check_declared("c", over, limits)


def test_signature_inputs_are_read_once_per_signature_object():
    from tensorflow.core.protobuf import meta_graph_pb2

    from steadyrank.service.serve import tensors

    def signature(dim: int) -> meta_graph_pb2.SignatureDef:
        sig = meta_graph_pb2.SignatureDef()
        sig.inputs["b"].dtype = tf.string.as_datatype_enum
        sig.inputs["a"].dtype = tf.float32.as_datatype_enum
        sig.inputs["a"].tensor_shape.dim.add().size = dim
        sig.inputs["b"].tensor_shape.unknown_rank = True
        return sig

    first = signature(-1)
    read = tensors.SignatureInputs.of(first)
    assert read.names == {"a", "b"}
    assert read.specs == (("a", tf.float32.as_datatype_enum, (-1,)),
                          ("b", tf.string.as_datatype_enum, None))
    assert tensors.SignatureInputs.of(first) is read
    # Another object (another model's signature) is read on its own, even when equal.
    assert tensors.SignatureInputs.of(signature(3)).specs[0][2] == (3,)
    kept = [signature(i) for i in range(tensors._SIGNATURE_CACHE + 5)]
    for sig in kept:
        tensors.SignatureInputs.of(sig)
    assert len(tensors._SIGNATURES) <= tensors._SIGNATURE_CACHE
    assert tensors.SignatureInputs.of(kept[-1]).specs[0][2] == (len(kept) - 1,)
