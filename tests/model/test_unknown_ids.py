"""Ids a model has never seen get one answer on every API: ``--unknown-ids score`` (the
default) answers what the export computes in process; ``reject`` refuses them alike on
Predict, Regress, Classify and Rank; both count them."""

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    prediction_service_pb2_grpc,
)

from steadyrank.model.artifact import reader
from steadyrank.service import client
from steadyrank.service.serve.server import ServerConfig, ServerThread
from steadyrank.service.stubs import ranking_pb2, ranking_pb2_grpc
from tests.conftest import train_small_models

NEW_ITEMS = np.array([99999, 88888], np.int64)
NEW_USER = 77777
INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture(scope="module")
def models(tiny_data, tmp_path_factory):
    return train_small_models(tiny_data, tmp_path_factory)


@pytest.fixture(scope="module")
def local(models):
    return reader.load(models / "ml")


def _serve(base, policy):
    thread = ServerThread(ServerConfig(model_base_path=base, port=0, metrics_port=-1,
                                       host="127.0.0.1", poll_seconds=0, shadow_rate=0.0,
                                       churn_rate=0.0, unknown_ids=policy))
    return thread, thread.start()


@pytest.fixture(scope="module", params=["score", "reject"])
def served(request, models):
    thread, srv = _serve(models, request.param)
    with client.channel(f"127.0.0.1:{srv.port}") as chan:
        yield request.param, srv, chan
    thread.stop(grace=1)


def _rows(local):
    """Known users with items of which two are new to the model."""
    users = local.module.signatures["users"]()["user_ids"].numpy()[:6].astype(np.int64)
    items = np.concatenate([local.item_ids[:4].astype(np.int64), NEW_ITEMS])
    return users, items


def _refused(call, message):
    with pytest.raises(grpc.RpcError) as err:
        call()
    assert err.value.code() == INVALID, err.value.details()
    assert message in err.value.details()
    assert "--unknown-ids reject" in err.value.details()


def _counted(srv, role):
    return srv.metrics.unknown_ids.labels("ml", role)._value.get()


def test_predict_rows_naming_new_items(served, local):
    policy, srv, chan = served
    stub = prediction_service_pb2_grpc.PredictionServiceStub(chan)
    users, items = _rows(local)
    request = client.predict_request("ml", {"user_id": users, "item_id": items})
    before = _counted(srv, "item")
    if policy == "reject":
        _refused(lambda: stub.Predict(request, timeout=30),
                 "inputs['item_id']: unknown item ids 88888, 99999 (not in the catalog")
    else:
        got = tf.make_ndarray(stub.Predict(request, timeout=30).outputs["score"])
        np.testing.assert_allclose(got, local.score({"user_id": users, "item_id": items}),
                                   rtol=1e-6)
    assert _counted(srv, "item") == before + 2  # counted under both policies


def test_predict_rows_naming_a_new_user(served, local):
    policy, srv, chan = served
    stub = prediction_service_pb2_grpc.PredictionServiceStub(chan)
    users = np.array([NEW_USER, NEW_USER], np.int64)
    items = local.item_ids[:2].astype(np.int64)
    call = lambda: client.predict_signature(stub, "ml", "serving_default",  # noqa: E731
                                            user_id=users, item_id=items)
    if policy == "reject":
        _refused(call, "inputs['user_id']: unknown user ids 77777")
    else:
        np.testing.assert_allclose(call()["score"], local.score(
            {"user_id": users, "item_id": items}), rtol=1e-6)


def test_predict_rank_signature(served, local):
    policy, _, chan = served
    stub = prediction_service_pb2_grpc.PredictionServiceStub(chan)
    users, items = _rows(local)
    call = lambda: client.predict_signature(stub, "ml", "rank",  # noqa: E731
                                            user_id=users[0], item_ids=items)
    if policy == "reject":
        _refused(call, "inputs['item_ids']: unknown item ids 88888, 99999")
    else:
        np.testing.assert_allclose(call()["scores"], local.rank_items(int(users[0]), items),
                                   rtol=1e-6)


def test_regress_on_examples_naming_new_items(served, local):
    policy, _, chan = served
    stub = prediction_service_pb2_grpc.PredictionServiceStub(chan)
    users, items = _rows(local)
    request = client.examples_request("regress", "ml", {"user_id": users, "item_id": items})
    if policy == "reject":
        _refused(lambda: stub.Regress(request, timeout=30),
                 "input.examples['item_id']: unknown item ids 88888, 99999")
    else:
        got = [r.value for r in stub.Regress(request, timeout=30).result.regressions]
        np.testing.assert_allclose(got, local.score({"user_id": users, "item_id": items}),
                                   rtol=1e-6)


def test_rank_with_new_candidates_and_a_new_user(served, local):
    policy, srv, chan = served
    stub = ranking_pb2_grpc.RankingServiceStub(chan)
    users, items = _rows(local)
    new_candidates = client.rank_request("ml", int(users[0]), 3, items)
    new_user = client.rank_request("ml", NEW_USER, 3, items[:4])
    if policy == "reject":
        _refused(lambda: stub.Rank(new_candidates, timeout=30),
                 "candidate_item_ids: unknown item ids 88888, 99999")
        _refused(lambda: stub.Rank(new_user, timeout=30), "user_id: unknown user ids 77777")
        batched = client.batched_request("ml", [client.rank_request(
            "ml", int(users[1]), 3, items[:4]), new_candidates])
        _refused(lambda: stub.Rank(batched, timeout=30),
                 "queries[1].candidate_item_ids: unknown item ids")
        return
    for request, user, candidates in ((new_candidates, int(users[0]), items),
                                      (new_user, NEW_USER, items[:4])):
        answer = stub.Rank(request, timeout=30)
        want = local.rank_items(user, candidates)
        top = np.argsort(-want, kind="stable")[:3]
        assert [i.item_id for i in answer.items] == [int(candidates[k]) for k in top]
        np.testing.assert_allclose([i.score for i in answer.items], want[top], rtol=1e-6)
    assert srv.metrics.unknown_id_requests.labels("ml")._value.get() >= 2
    assert _counted(srv, "user") >= 1


@pytest.fixture(scope="module", params=["score", "reject"])
def shop(request, shop_models):
    thread, srv = _serve(shop_models, request.param)
    with client.channel(f"127.0.0.1:{srv.port}") as chan:
        yield request.param, chan, reader.load(shop_models / "shop")
    thread.stop(grace=1)


def test_classify_examples_with_a_new_string_item(shop):
    """A binary model with string ids and context features: Classify alike."""
    policy, chan, model = shop
    stub = prediction_service_pb2_grpc.PredictionServiceStub(chan)
    rows = {"shopper": ["s001", "s002"], "sku": ["k1000", "k-new"], "device": ["ios", "web"],
            "hour": [9.0, 20.0]}
    request = client.examples_request("classify", "shop", rows)
    if policy == "reject":
        _refused(lambda: stub.Classify(request, timeout=30),
                 "input.examples['sku']: unknown item ids 'k-new'")
        return
    answer = stub.Classify(request, timeout=30)
    got = [c.classes[1].score for c in answer.result.classifications]
    want = model.score({"shopper": np.array(rows["shopper"], object),
                        "sku": np.array(rows["sku"], object),
                        "device": np.array(rows["device"], object),
                        "hour": np.array(rows["hour"], np.float32)})
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_rank_of_a_new_string_user(shop):
    policy, chan, model = shop
    stub = ranking_pb2_grpc.RankingServiceStub(chan)
    request = ranking_pb2.RankRequest(k=2, string_user_id="nobody")
    request.model_spec.name = "shop"
    request.string_candidate_item_ids.extend(["k1000", "k1001", "k1002"])
    request.context_features["device"].string_value = "ios"
    request.context_features["hour"].float_value = 9.0
    if policy == "reject":
        _refused(lambda: stub.Rank(request, timeout=30),
                 "user_id: unknown user ids 'nobody'")
        return
    answer = stub.Rank(request, timeout=30)
    want = model.rank({"shopper": "nobody", "item_ids": np.array(["k1000", "k1001", "k1002"],
                                                                  object),
                       "device": "ios", "hour": np.float32(9.0)})
    assert sorted(i.score for i in answer.items) == pytest.approx(sorted(want)[-2:],
                                                                  rel=1e-6)


def test_a_bad_policy_is_named(tmp_path, capsys):
    from steadyrank.cli.main import main as cli_main

    with pytest.raises(ValueError, match="--unknown-ids 'drop': must be score or reject"):
        ServerConfig(model_base_path=tmp_path, unknown_ids="drop").validate()
    assert cli_main(["serve", "--model-base-path", str(tmp_path), "--unknown-ids", "drop"]) == 2
    assert "--unknown-ids 'drop': must be score or reject" in capsys.readouterr().err
