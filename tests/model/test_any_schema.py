"""Serving any schema: a model with string ids, context features, a user feature and
numeric and multi-hot item features is answered by every API with the in-process
signatures' scores; a Criteo-format model answers Predict and Classify, and Rank says why
it cannot; every bad request names the feature and what was expected."""

import signal

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.example import example_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from steadyrank.cli.main import main as cli_main
from steadyrank.model.artifact import reader
from steadyrank.service import client
from steadyrank.service.client.model_inputs import ModelInputs
from steadyrank.service.serve.server import ServerConfig, ServerThread
from steadyrank.service.stubs import ranking_pb2, ranking_pb2_grpc


@pytest.fixture(scope="module")
def served(shop_models):
    thread = ServerThread(ServerConfig(model_base_path=shop_models, port=0, metrics_port=-1,
                                       host="127.0.0.1", poll_seconds=0, shadow_rate=1.0,
                                       churn_rate=0.0))
    srv = thread.start()
    yield srv, {name: reader.load(shop_models / name) for name in ("shop", "clicks")}
    thread.stop(grace=1)


@pytest.fixture(scope="module")
def chan(served):
    with client.channel(f"127.0.0.1:{served[0].port}") as channel:
        yield channel


@pytest.fixture(scope="module")
def stubs(chan):
    return (prediction_service_pb2_grpc.PredictionServiceStub(chan),
            ranking_pb2_grpc.RankingServiceStub(chan))


def _example(**features) -> example_pb2.Example:
    example = example_pb2.Example()
    for name, value in features.items():
        values = value if isinstance(value, list) else [value]
        feature = example.features.feature[name]
        if isinstance(values[0], str):
            feature.bytes_list.value.extend(v.encode() for v in values)
        elif isinstance(values[0], float):
            feature.float_list.value.extend(values)
        else:
            feature.int64_list.value.extend(values)
    return example


ROWS = {"shopper": np.array(["s001", "s002", "s001"], object),
        "sku": np.array(["k1000", "k1001", "k1002"], object),
        "device": np.array(["ios", "web", "android"], object),
        "hour": np.array([9.0, 13.0, 22.0], np.float32)}


def _local(model, signature, **inputs):
    out = model.module.signatures[signature](**{k: tf.constant(v) for k, v in inputs.items()})
    return {k: v.numpy() for k, v in out.items()}


def test_stock_predict_scores_equal_the_signature(served, stubs):
    _, models = served
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "shop"
    for name, values in ROWS.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(values))
    got = tf.make_ndarray(stubs[0].Predict(request, timeout=30).outputs["score"])
    np.testing.assert_allclose(got, models["shop"].score(ROWS), rtol=1e-6)


def test_classify_with_context_equals_the_signature(served, stubs):
    _, models = served
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "shop"
    block = request.input.example_list_with_context
    block.context.CopyFrom(_example(shopper="s001", device="ios", hour=9.0))
    for sku in ("k1000", "k1001", "k1002"):
        block.examples.append(_example(sku=sku))
    result = stubs[0].Classify(request, timeout=30).result
    p = np.array([c.classes[1].score for c in result.classifications])
    assert [c.label for c in result.classifications[0].classes] == ["0", "1"]
    np.testing.assert_allclose([c.classes[0].score for c in result.classifications], 1 - p,
                               rtol=1e-6)
    want = models["shop"].score({"shopper": np.array(["s001"] * 3, object),
                                 "sku": np.array(["k1000", "k1001", "k1002"], object),
                                 "device": np.array(["ios"] * 3, object),
                                 "hour": np.full(3, 9.0, np.float32)})
    np.testing.assert_allclose(p, want, rtol=1e-5)


def test_regress_on_a_binary_model_says_to_classify(stubs):
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = "shop"
    request.input.example_list.examples.append(_example(shopper="s001", sku="k1000",
                                                        device="ios", hour=9.0))
    with pytest.raises(grpc.RpcError) as err:
        stubs[0].Regress(request, timeout=30)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "use Classify" in err.value.details()


def test_a_key_in_both_the_context_and_an_example_is_refused(stubs):
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "shop"
    block = request.input.example_list_with_context
    block.context.CopyFrom(_example(shopper="s001", device="ios", hour=9.0))
    block.examples.append(_example(sku="k1000", device="web"))
    with pytest.raises(grpc.RpcError) as err:
        stubs[0].Classify(request, timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'device' is also in the context" in err.value.details()


def _rank(stub, **fields):
    request = ranking_pb2.RankRequest(k=3, **fields)
    request.model_spec.name = "shop"
    return request


def test_rank_with_context_equals_the_rank_signature(served, stubs):
    _, models = served
    request = _rank(stubs[1], string_user_id="s001",
                    string_candidate_item_ids=["k1000", "k1001", "k1002", "k1003"])
    request.context_features["device"].string_value = "ios"
    request.context_features["hour"].float_value = 9.0
    response = stubs[1].Rank(request, timeout=30)
    want = _local(models["shop"], "rank", shopper=b"s001",
                  item_ids=np.array([b"k1000", b"k1001", b"k1002", b"k1003"], object),
                  device=b"ios", hour=np.float32(9.0))["scores"]
    order = np.argsort(-want, kind="stable")[:3]
    assert [i.string_item_id for i in response.items] == [f"k{1000 + j}" for j in order]
    np.testing.assert_allclose([i.score for i in response.items], want[order], rtol=1e-5)


def test_rank_with_user_features_for_a_new_user(served, stubs):
    _, models = served
    request = _rank(stubs[1], string_user_id="someone-new",
                    string_candidate_item_ids=["k1000", "k1001", "k1002"])
    request.context_features["device"].string_value = "web"
    request.context_features["hour"].int64_value = 20  # an int64 is taken for a float
    request.user_features["tier"].string_value = "gold"
    request.user_features["likes"].string_list.value.extend(["books", "music"])
    response = stubs[1].Rank(request, timeout=30)
    want = _local(models["shop"], "rank_with_features", shopper=b"someone-new",
                  item_ids=np.array([b"k1000", b"k1001", b"k1002"], object), device=b"web",
                  hour=np.float32(20.0), tier=b"gold",
                  likes=np.array([b"books", b"music", b""], object))["scores"]
    np.testing.assert_allclose(sorted((i.score for i in response.items), reverse=True),
                               np.sort(want)[::-1], rtol=1e-5)


@pytest.mark.parametrize("change, message", [
    (lambda r: r.context_features.pop("hour"), "context_features: missing feature 'hour'"),
    (lambda r: r.context_features["color"].string_value.__class__,
     "context_features: unknown feature 'color'"),
    (lambda r: setattr(r.context_features["device"], "int64_value", 3),
     "context_features['device']: got int64_value, expected one string"),
    (lambda r: r.context_features["device"].string_list.value.extend(["a", "b"]),
     "context_features['device']: got string_list, expected one string"),
    (lambda r: r.user_features["tier"].int64_value.__class__,
     "user_features['tier']: no value; expected one string"),
    (lambda r: r.user_features["likes"].string_list.value.extend(["a"] * 4),
     "user_features['likes']: 4 values, at most 3"),
    (lambda r: r.user_features["likes"].int64_list.value.append(4),
     "user_features['likes']: got int64_list, expected a list of at most 3 string values"),
    (lambda r: r.user_features.pop("likes"), "user_features: missing feature 'likes'"),
    (lambda r: r.context_features["tier"].string_value.__class__,
     "context_features: unknown feature 'tier' (tier goes in user_features)"),
    (lambda r: setattr(r, "user_id", 5), "user_id: this model's shopper ids are strings"),
    (lambda r: r.candidate_item_ids.append(3),
     "candidate_item_ids: this model's item_ids ids are strings"),
])
def test_bad_rank_requests_name_the_feature(stubs, change, message):
    request = _rank(stubs[1], string_user_id="s001")
    request.context_features["device"].string_value = "ios"
    request.context_features["hour"].float_value = 9.0
    if "color" in message:
        request.context_features["color"].string_value = "red"
    if "'tier' (tier" in message:
        request.context_features["tier"].string_value = "gold"
    if "user_features" in message:
        request.user_features["tier"].string_value = "gold"
        request.user_features["likes"].string_value = "books"  # one value: a list of one
    if "user_features['tier']" in message:
        request.user_features["tier"].CopyFrom(ranking_pb2.FeatureValue())
    change(request)
    with pytest.raises(grpc.RpcError) as err:
        stubs[1].Rank(request, timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in err.value.details(), err.value.details()


def test_the_cli_ranks_with_features_parsed_by_their_dtype(served, capsys):
    server = f"127.0.0.1:{served[0].port}"
    assert cli_main(["rank", "--server", server, "--model", "shop", "--user", "s001",
                     "--candidates", "k1000,k1001,k1002", "--k", "2",
                     "--feature", "device=ios", "--feature", "hour=9"]) == 0
    out = capsys.readouterr().out
    assert "k100" in out and out.count("\n") >= 3
    assert cli_main(["rank", "--server", server, "--model", "shop", "--user", "s001",
                     "--feature", "hour=nine", "--feature", "device=ios"]) == 2
    assert "--feature hour='nine': not one float" in capsys.readouterr().err


def test_a_click_model_without_ids_predicts_and_classifies_but_does_not_rank(served, chan,
                                                                              stubs):
    _, models = served
    model = models["clicks"]
    specs = ModelInputs.read(chan, "clicks").rows
    rng = np.random.default_rng(0)
    from steadyrank.service.client.model_inputs import random_rows
    rows = random_rows(rng, specs, 5)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "clicks"
    for name, values in rows.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(values))
    got = tf.make_ndarray(stubs[0].Predict(request, timeout=30).outputs["score"])
    np.testing.assert_allclose(got, model.score(rows), rtol=1e-6)
    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name = "clicks"
    for i in range(5):
        classify.input.example_list.examples.append(_example(**{
            k: (v[i].item() if hasattr(v[i], "item") else v[i]) for k, v in rows.items()}))
    result = stubs[0].Classify(classify, timeout=30).result
    np.testing.assert_allclose([c.classes[1].score for c in result.classifications], got,
                               rtol=1e-5)
    with pytest.raises(grpc.RpcError) as err:
        stubs[1].Rank(ranking_pb2.RankRequest(model_spec=ranking_pb2.ModelSpec(name="clicks"),
                                              k=1), timeout=30)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "no user and item ids" in err.value.details()


def test_nothing_in_service_names_a_movielens_feature():
    """The server and its tools take every feature name from the model: no string in
    service/ is one of MovieLens' feature names."""
    import io as _io
    import tokenize

    from tests.conftest import REPO

    movielens = {"user_id", "item_id", "gender", "occupation", "zip", "age", "genres",
                 "timestamp"}
    proto_fields = {"user_id"}  # RankRequest.user_id, the field, is not the feature
    named = []
    for path in sorted((REPO / "service").glob("*.py")):
        for token in tokenize.generate_tokens(_io.StringIO(path.read_text()).readline):
            if token.type == tokenize.STRING and not token.string.startswith(('"""', "f")):
                value = token.string.strip("'\"")
                if value in movielens - proto_fields:
                    named.append(f"{path.name}:{token.start[0]}: {token.string}")
    assert named == [], named


def test_steadyrank_serve_answers_every_api_on_the_shop_schema(served, shop_models, tmp_path):
    """The same model served by the ``steadyrank serve`` command (a worker process under its
    supervisor): stock Predict, Classify with context and Rank with context features give the
    in-process signatures' scores."""
    from tests.conftest import kill_serve, serve_ports, start_serve

    _, models = served
    log = tmp_path / "serve.log"
    proc = start_serve(log, "--model-base-path", str(shop_models), "--metrics-port", "-1",
                       "--workers", "1", "--shutdown-grace", "5")
    try:
        port, _ = serve_ports(log)
        with client.channel(f"127.0.0.1:{port}") as chan:
            predict = prediction_service_pb2_grpc.PredictionServiceStub(chan)
            request = predict_pb2.PredictRequest()
            request.model_spec.name = "shop"
            for name, values in ROWS.items():
                request.inputs[name].CopyFrom(tf.make_tensor_proto(values))
            got = tf.make_ndarray(predict.Predict(request, timeout=30).outputs["score"])
            np.testing.assert_allclose(got, models["shop"].score(ROWS), rtol=1e-6)
            classify = classification_pb2.ClassificationRequest()
            classify.model_spec.name = "shop"
            block = classify.input.example_list_with_context
            block.context.CopyFrom(_example(device="web", hour=13.0))
            block.examples.extend([_example(shopper="s002", sku="k1001")])
            (one,) = predict.Classify(classify, timeout=30).result.classifications
            np.testing.assert_allclose(one.classes[1].score, got[1], rtol=1e-5)
            rank = _rank(None, string_user_id="s002", string_candidate_item_ids=["k1001"])
            rank.k = 1
            rank.context_features["device"].string_value = "web"
            rank.context_features["hour"].float_value = 13.0
            (item,) = ranking_pb2_grpc.RankingServiceStub(chan).Rank(rank, timeout=30).items
            assert item.string_item_id == "k1001"
            np.testing.assert_allclose(item.score, got[1], rtol=1e-5)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        kill_serve(proc)
