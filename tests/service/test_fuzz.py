"""A seeded, property-based fuzz suite of the server: bad bytes, dtypes, shapes, enums, huge
declared shapes and long names on every method, the health and reflection services too.

Properties, over more than 10,000 cases per run: every answer's code is in the allowed set
(a caller's mistake is never UNKNOWN or INTERNAL), the server stays healthy and still ranks
after every batch of cases, and its memory stays bounded.
"""


import shutil

import grpc
import pytest
from grpc_health.v1 import health_pb2
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from tensorflow.core.example import example_pb2
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    predict_pb2,
    regression_pb2,
)

from steadyrank.service import client
from steadyrank.service.serve.server import ServerConfig, ServerThread
from steadyrank.service.stubs import ranking_pb2
from tests.conftest import declared_shape_request, rss_mb, train_small_models

ALLOWED = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
           grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNIMPLEMENTED,
           grpc.StatusCode.FAILED_PRECONDITION}
METHODS = {  # every unary method of every service, with its request class
    "/tensorflow.serving.PredictionService/Predict": predict_pb2.PredictRequest,
    "/tensorflow.serving.PredictionService/GetModelMetadata":
        get_model_metadata_pb2.GetModelMetadataRequest,
    "/tensorflow.serving.PredictionService/Regress": regression_pb2.RegressionRequest,
    "/tensorflow.serving.PredictionService/Classify":
        classification_pb2.ClassificationRequest,
    "/tensorflow.serving.PredictionService/MultiInference": None,
    "/tensorflow.serving.ModelService/GetModelStatus":
        get_model_status_pb2.GetModelStatusRequest,
    "/tensorflow.serving.ModelService/HandleReloadConfigRequest": None,
    "/steadyrank.RankingService/Rank": ranking_pb2.RankRequest,
    "/steadyrank.RankingService/GetRequestSchema": ranking_pb2.RequestSchemaRequest,
    "/grpc.health.v1.Health/Check": health_pb2.HealthCheckRequest,
}
FUZZ = settings(deadline=None, database=None, suppress_health_check=list(HealthCheck))
SIGNATURES = ["serving_default", "rank", "catalog", "users", "rank_with_features",
              "__saved_model_init_op", "", "nope"]
INPUT_KEYS = ["user_id", "item_id", "item_ids", "gender", "age", "x"]
DTYPES = [types_pb2.DT_INT64, types_pb2.DT_INT32, types_pb2.DT_FLOAT, types_pb2.DT_STRING,
          types_pb2.DT_DOUBLE, types_pb2.DT_BOOL, 0, -1, 999, 2**31 - 1]
SEEN = {"cases": 0}


@pytest.fixture(scope="module")
def server(tiny_data, shop_models, tmp_path_factory):
    base = train_small_models(tiny_data, tmp_path_factory, {"ml": 1, "ml-b": 2}, "fuzz-models")
    for name in ("shop", "clicks"):  # string ids, context, lists, floats; no ids at all
        shutil.copytree(shop_models / name, base / name)
    thread = ServerThread(ServerConfig(
        model_base_path=base, port=0, metrics_port=-1, host="127.0.0.1", poll_seconds=0,
        max_candidates=500, max_request_elements=5000, max_message_bytes=4 << 20,
        max_inflight_bytes=8 << 20, max_string_bytes=1 << 16, shadow_rate=0.0,
        churn_rate=0.0))
    srv = thread.start()
    yield srv
    thread.stop(grace=1)


def _call(chan, method: str, body: bytes) -> grpc.StatusCode:
    fn = chan.unary_unary(method, request_serializer=None, response_deserializer=None)
    try:
        fn(body, timeout=20)
        return grpc.StatusCode.OK
    except grpc.RpcError as err:
        return err.code()


def _check(code: grpc.StatusCode, what: str) -> None:
    SEEN["cases"] += 1
    assert code in ALLOWED, f"{what}: {code}"


def _healthy(chan) -> None:
    health = chan.unary_unary("/grpc.health.v1.Health/Check",
                              request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
                              response_deserializer=health_pb2.HealthCheckResponse.FromString)
    assert health(health_pb2.HealthCheckRequest(), timeout=10).status == 1
    rank = chan.unary_unary("/steadyrank.RankingService/Rank",
                            request_serializer=ranking_pb2.RankRequest.SerializeToString,
                            response_deserializer=ranking_pb2.RankResponse.FromString)
    assert len(rank(client.rank_request("ml", 1, 5), timeout=10).items) == 5


def _raw(chan, method, body):
    _check(_call(chan, method, body), f"{method} raw {body[:20]!r}")


def _tensor(draw) -> tensor_pb2.TensorProto:
    proto = tensor_pb2.TensorProto(dtype=draw(st.sampled_from(DTYPES)))
    if draw(st.booleans()):
        proto.tensor_shape.unknown_rank = True
    for size in draw(st.lists(st.sampled_from([-5, 0, 1, 3, 7, 100, 10**6, 10**12, 2**62]),
                              max_size=3)):
        proto.tensor_shape.dim.append(tensor_shape_pb2.TensorShapeProto.Dim(size=size))
    fill = draw(st.sampled_from(["none", "int64", "float", "string", "content", "big"]))
    if fill == "int64":
        proto.int64_val.extend(draw(st.lists(st.integers(-2**63, 2**63 - 1), max_size=5)))
    elif fill == "float":
        proto.float_val.extend(draw(st.lists(st.floats(width=32), max_size=5)))
    elif fill == "string":
        proto.string_val.extend(draw(st.lists(st.binary(max_size=50), max_size=5)))
    elif fill == "content":
        proto.tensor_content = draw(st.binary(max_size=64))
    elif fill == "big":
        proto.string_val.append(b"x" * 70_000)
    return proto


@st.composite
def predict_requests(draw) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = draw(st.sampled_from(["ml", "ml-b", "", "nope", "x" * 20_000]))
    request.model_spec.signature_name = draw(st.sampled_from(SIGNATURES))
    if draw(st.booleans()):
        request.model_spec.version.value = draw(st.integers(-3, 3))
    for key in draw(st.lists(st.sampled_from(INPUT_KEYS), max_size=3, unique=True)):
        request.inputs[key].CopyFrom(_tensor(draw))
    request.output_filter.extend(draw(st.lists(st.sampled_from(["score", "scores", "zz"]),
                                               max_size=2)))
    return request


def _predict(chan, request):
    body = request.SerializeToString()
    _check(_call(chan, "/tensorflow.serving.PredictionService/Predict", body),
           f"Predict {str(request)[:300]}")


@st.composite
def rank_requests(draw) -> ranking_pb2.RankRequest:
    request = ranking_pb2.RankRequest(
        user_id=draw(st.integers(-2**63, 2**63 - 1) | st.sampled_from([1, 2, 943])),
        k=draw(st.integers(-5, 2000)), request_id=draw(st.text(max_size=30)))
    request.model_spec.name = draw(st.sampled_from(["ml", "ml-b", "", "nope", "y" * 9000]))
    if draw(st.booleans()):
        request.model_spec.version.value = draw(st.integers(-2, 3))
    request.candidate_item_ids.extend(draw(st.lists(
        st.integers(-2**63, 2**63 - 1) | st.integers(1, 1682), max_size=20)))
    if draw(st.booleans()):
        request.candidate_item_ids.extend(range(1, draw(st.integers(0, 2000))))
    for name in draw(st.lists(st.sampled_from(["gender", "occupation", "zip", "age", "eye"]),
                              max_size=5, unique=True)):
        value = request.user_features[name]
        if draw(st.booleans()):
            value.string_value = draw(st.text(max_size=20) | st.just("q" * 5000))
        else:
            value.int64_value = draw(st.integers(-2**63, 2**63 - 1))
    return request


def _rank(chan, request):
    _check(_call(chan, "/steadyrank.RankingService/Rank", request.SerializeToString()),
           f"Rank {str(request)[:300]}")


MODELS = ["shop", "shop-b", "clicks", "ml", "nope"]
FEATURES = ["device", "hour", "tier", "likes", "tags", "shopper", "sku", "I1", "C1", "gender", "x"]
TEXT = st.text(max_size=12) | st.just("w" * 300)
NUMBERS = st.floats(width=32) | st.integers(-2**63, 2**63 - 1)


def _feature_value(draw, value) -> None:
    """A FeatureValue of any kind: one value or a list, sometimes far too long."""
    kind = draw(st.sampled_from(["string_value", "int64_value", "float_value", "int64_list",
                                 "string_list", "float_list", "none"]))
    long = draw(st.sampled_from([0, 0, 0, 9, 5000]))
    if kind == "string_value":
        value.string_value = draw(TEXT)
    elif kind == "int64_value":
        value.int64_value = draw(st.integers(-2**63, 2**63 - 1))
    elif kind == "float_value":
        value.float_value = draw(st.floats(width=32))
    elif kind == "int64_list":
        value.int64_list.value.extend(draw(st.lists(st.integers(-2**63, 2**63 - 1),
                                                    max_size=6)) + [1] * long)
    elif kind == "string_list":
        value.string_list.value.extend(draw(st.lists(TEXT, max_size=6)) + ["t"] * long)
    elif kind == "float_list":
        value.float_list.value.extend(draw(st.lists(st.floats(width=32), max_size=6))
                                      + [0.5] * long)


@st.composite
def schema_rank_requests(draw) -> ranking_pb2.RankRequest:
    """Rank requests with the new fields: context features, lists, floats, string ids."""
    request = ranking_pb2.RankRequest(k=draw(st.integers(-2, 30)))
    request.model_spec.name = draw(st.sampled_from(MODELS))
    if draw(st.booleans()):
        request.string_user_id = draw(TEXT | st.sampled_from(["s001", "s017"]))
    else:
        request.user_id = draw(st.integers(-2**63, 2**63 - 1) | st.just(1))
    request.string_candidate_item_ids.extend(draw(st.lists(
        TEXT | st.sampled_from(["k1000", "k1001", "k1005"]), max_size=8)))
    if draw(st.booleans()):
        request.candidate_item_ids.extend(draw(st.lists(st.integers(-5, 2000), max_size=5)))
    for field in ("context_features", "user_features"):
        for name in draw(st.lists(st.sampled_from(FEATURES), max_size=4, unique=True)):
            _feature_value(draw, getattr(request, field)[name])
    if draw(st.booleans()):  # the same fields in a batched request
        query = request.queries.add(k=request.k, string_user_id=request.string_user_id)
        query.string_candidate_item_ids.extend(request.string_candidate_item_ids)
        for name, value in request.context_features.items():
            query.context_features[name].CopyFrom(value)
        if draw(st.booleans()):
            request.ClearField("context_features")
            request.ClearField("string_user_id")
            request.ClearField("k")
            request.ClearField("string_candidate_item_ids")
            request.ClearField("candidate_item_ids")
            request.ClearField("user_features")
            request.user_id = 0
    return request


def _example(draw) -> example_pb2.Example:
    example = example_pb2.Example()
    for name in draw(st.lists(st.sampled_from(FEATURES + ["I2", "C2"]), max_size=6,
                              unique=True)):
        feature = example.features.feature[name]
        kind = draw(st.sampled_from(["bytes", "float", "int64", "empty"]))
        count = draw(st.sampled_from([0, 1, 1, 1, 2, 20]))
        if kind == "bytes":
            feature.bytes_list.value.extend(draw(st.binary(max_size=20)) for _ in range(count))
        elif kind == "float":
            feature.float_list.value.extend([draw(st.floats(width=32))] * count)
        elif kind == "int64":
            feature.int64_list.value.extend([draw(st.integers(-2**63, 2**63 - 1))] * count)
    return example


@st.composite
def example_requests(draw) -> tuple[str, bytes]:
    """Classify or Regress bodies: example lists with and without context, odd signatures,
    sometimes a huge example."""
    method = draw(st.sampled_from(["Classify", "Regress"]))
    request = (classification_pb2.ClassificationRequest() if method == "Classify"
               else regression_pb2.RegressionRequest())
    request.model_spec.name = draw(st.sampled_from(MODELS))
    request.model_spec.signature_name = draw(st.sampled_from(
        ["", "", "serving_default", "examples", "rank", "x"]))
    kind = draw(st.sampled_from(["example_list", "example_list_with_context", "none"]))
    if kind != "none":
        block = getattr(request.input, kind)
        block.examples.extend(_example(draw) for _ in range(draw(st.integers(0, 6))))
        if kind == "example_list_with_context":
            block.context.CopyFrom(_example(draw))
        if draw(st.integers(0, 20)) == 0:
            block.examples.add().features.feature["C1"].bytes_list.value.append(b"h" * 300_000)
    return method, request.SerializeToString()


def _schema_rank(chan, request):
    _check(_call(chan, "/steadyrank.RankingService/Rank", request.SerializeToString()),
           f"Rank {str(request)[:300]}")


def _examples(chan, request):
    method, body = request
    _check(_call(chan, f"/tensorflow.serving.PredictionService/{method}", body),
           f"{method} {body[:100]!r}")


def _metadata_and_status(chan, name, version, field):
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=field)
    request.model_spec.name = name
    request.model_spec.version.value = version
    _check(_call(chan, "/tensorflow.serving.PredictionService/GetModelMetadata",
                 request.SerializeToString()), f"GetModelMetadata {name[:40]!r}")
    status = get_model_status_pb2.GetModelStatusRequest()
    status.model_spec.name = name
    _check(_call(chan, "/tensorflow.serving.ModelService/GetModelStatus",
                 status.SerializeToString()), f"GetModelStatus {name[:40]!r}")
    health = health_pb2.HealthCheckRequest(service=name)
    _check(_call(chan, "/grpc.health.v1.Health/Check", health.SerializeToString()),
           f"Health {name[:40]!r}")


# kind -> (case, its strategies, examples); 13,100 cases in all.
ROUNDS = {
    "raw": (_raw, dict(method=st.sampled_from(sorted(METHODS)), body=st.binary(max_size=300)),
            4000),
    "predict": (_predict, dict(request=predict_requests()), 3000),
    "rank": (_rank, dict(request=rank_requests()), 2500),
    "schema_rank": (_schema_rank, dict(request=schema_rank_requests()), 1500),
    "examples": (_examples, dict(request=example_requests()), 1500),
    "names": (_metadata_and_status,
              dict(name=st.text(max_size=40) | st.just("z" * 30_000),
                   version=st.integers(-2, 5),
                   field=st.lists(st.sampled_from(["signature_def", "", "other"]),
                                  max_size=2)), 600),
}


@pytest.mark.parametrize("kind", list(ROUNDS))
def test_fuzz_answers_only_allowed_codes_and_the_server_stays_well(chan, kind):
    case, strategies, examples = ROUNDS[kind]
    before = rss_mb()
    batch = 500
    for number, start in enumerate(range(0, examples, batch)):
        # Seeded per batch: the same cases every run, different ones in every batch.
        run = seed(1000 * len(kind) + number)(settings(
            FUZZ, max_examples=min(batch, examples - start))(given(**strategies)(case)))
        run(chan)
        _healthy(chan)
    grown = rss_mb() - before
    assert grown < 256, f"RSS grew by {grown:.0f} MB over the {kind} fuzz"


@pytest.fixture(scope="module")
def reject_chan(server):
    """A second server on the same models with ``--unknown-ids reject`` (the first runs the
    default, ``score``): ids the models never saw are refused there."""
    config = ServerConfig(model_base_path=server.config.model_base_path, port=0,
                          metrics_port=-1, host="127.0.0.1", poll_seconds=0,
                          max_candidates=500, max_request_elements=5000,
                          max_message_bytes=4 << 20, max_inflight_bytes=8 << 20,
                          max_string_bytes=1 << 16, shadow_rate=0.0, churn_rate=0.0,
                          unknown_ids="reject")
    thread = ServerThread(config)
    srv = thread.start()
    with client.channel(f"127.0.0.1:{srv.port}") as channel:
        yield channel
    thread.stop(grace=1)


@pytest.mark.parametrize("kind", ["predict", "rank", "schema_rank", "examples"])
def test_fuzz_under_the_reject_policy_answers_only_allowed_codes(reject_chan, kind):
    """The id-carrying rounds again, fewer cases, where unknown ids are refused."""
    case, strategies, _ = ROUNDS[kind]
    run = seed(7000 + len(kind))(settings(FUZZ, max_examples=300)(given(**strategies)(case)))
    run(reject_chan)
    _healthy(reject_chan)


def test_more_than_ten_thousand_cases_ran():
    if SEEN["cases"] == 0:
        pytest.skip("the fuzz rounds did not run in this session")
    assert SEEN["cases"] >= 10_000, SEEN


def test_undecodable_bodies_are_counted_and_logged_once(server, chan, caplog):
    metrics = server.metrics
    before = metrics.requests.labels("Rank", "INVALID_ARGUMENT")._value.get()
    for _ in range(50):
        assert _call(chan, "/steadyrank.RankingService/Rank", b"\xff\xff\xff") == \
            grpc.StatusCode.INVALID_ARGUMENT
    after = metrics.requests.labels("Rank", "INVALID_ARGUMENT")._value.get()
    assert after - before == 50
    assert not [r for r in caplog.records if r.exc_info]  # no tracebacks


def test_a_huge_declared_shape_is_refused_before_it_exists(chan):
    request = declared_shape_request(10**9)
    assert len(request.SerializeToString()) < 100
    before = rss_mb()
    fn = chan.unary_unary("/tensorflow.serving.PredictionService/Predict",
                          request_serializer=predict_pb2.PredictRequest.SerializeToString,
                          response_deserializer=predict_pb2.PredictResponse.FromString)
    with pytest.raises(grpc.RpcError) as err:
        fn(request, timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "--max-request-elements" in err.value.details()
    assert rss_mb() - before < 50


def test_oversized_and_concurrent_bodies_are_refused_with_the_flag_named(server, chan):
    huge = ranking_pb2.RankRequest(k=1, candidate_item_ids=range(2**40, 2**40 + 900_000))
    huge.model_spec.name = "ml"
    body = huge.SerializeToString()
    assert len(body) > 4 << 20
    code = _call(chan, "/steadyrank.RankingService/Rank", body)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED  # gRPC's own receive limit
    assert server.wire.admission.inflight == 0  # every admitted body was released


class _Aborted(Exception):
    pass


class _Context:
    """The part of a grpc.aio.ServicerContext the wire handlers use."""

    def __init__(self):
        self.code = None

    async def abort(self, code, message):
        self.code, self.message = code, message
        raise _Aborted(message)


def test_bodies_over_the_in_flight_budget_are_refused_not_queued():
    import asyncio

    from steadyrank.service.serve.telemetry import ServerMetrics
    from steadyrank.service.serve.wire import Admission, Wire

    metrics = ServerMetrics()
    wire = Wire(Admission(max_message_bytes=1000, max_inflight_bytes=1500, metrics=metrics),
                metrics)
    release = asyncio.Event()
    seen = []

    async def behavior(request, context):
        seen.append(request.user_id)
        await release.wait()
        return ranking_pb2.RankResponse()

    handler = wire.unary_unary("Rank", ranking_pb2.RankRequest, behavior)
    body = ranking_pb2.RankRequest(user_id=7, request_id="r" * 800).SerializeToString()

    async def scenario():
        first = asyncio.ensure_future(handler(body, _Context()))
        await asyncio.sleep(0.01)  # the first request is in flight, holding ~810 bytes
        assert wire.admission.inflight == len(body)
        refused = _Context()
        with pytest.raises(_Aborted, match="--max-inflight-bytes"):
            await handler(body, refused)
        assert refused.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        too_big = _Context()
        with pytest.raises(_Aborted, match="--max-message-bytes"):
            await handler(b"x" * 1001, too_big)
        garbage = _Context()
        with pytest.raises(_Aborted, match="not a valid steadyrank.RankRequest"):
            await handler(b"\xff\xff", garbage)
        assert garbage.code == grpc.StatusCode.INVALID_ARGUMENT
        release.set()
        await first
        assert wire.admission.inflight == 0

    asyncio.run(scenario())
    wire.close()
    assert seen == [7]
    assert metrics.requests.labels("Rank", "RESOURCE_EXHAUSTED")._value.get() == 2
    assert metrics.requests.labels("Rank", "INVALID_ARGUMENT")._value.get() == 1


def test_huge_lists_and_examples_are_refused_on_their_size(server, chan):
    """A serialized Example over the examples' byte budget is refused before it is parsed;
    a multi-hot list longer than the feature's max_len before any array is made of it."""
    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name = "shop"
    classify.input.example_list.examples.add().features.feature["sku"].bytes_list.value.append(
        b"k" * 400_000)
    fn = chan.unary_unary("/tensorflow.serving.PredictionService/Classify",
                          request_serializer=None, response_deserializer=None)
    with pytest.raises(grpc.RpcError) as err:
        fn(classify.SerializeToString(), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "larger than any valid Classify request" in err.value.details()
    assert "--max-string-bytes" in err.value.details()
    rank = ranking_pb2.RankRequest(k=1, string_user_id="s001")
    rank.model_spec.name = "shop"
    rank.context_features["device"].string_value = "ios"
    rank.context_features["hour"].float_value = 9.0
    rank.user_features["tier"].string_value = "gold"
    rank.user_features["likes"].string_list.value.extend(["books"] * 300_000)
    before = rss_mb()
    with pytest.raises(grpc.RpcError) as err:
        _rank_stub(chan)(rank, timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "user_features['likes']: 300000 values, at most 3" in err.value.details()
    assert rss_mb() - before < 64


def _rank_stub(chan):
    return chan.unary_unary("/steadyrank.RankingService/Rank",
                            request_serializer=ranking_pb2.RankRequest.SerializeToString,
                            response_deserializer=ranking_pb2.RankResponse.FromString)
