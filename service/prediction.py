"""TensorFlow Serving's ``PredictionService`` and ``ModelService`` over our model manager.

Any stock TF Serving client works unchanged: ``Predict`` runs any signature of the export
(``serving_default`` and ``rank`` go through the batcher), ``GetModelMetadata`` returns the
SignatureDefs, ``Regress`` scores ``tf.Example`` inputs holding ``user_id`` and ``item_id``
(rating models), and ``GetModelStatus`` reports versions and their states.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import numpy as np
from tensorflow.core.protobuf import error_codes_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from steadyrank.model.artifact.layout import ITEM_IDS, RANK, SERVING_DEFAULT
from steadyrank.service.batching import Scorer
from steadyrank.service.manager import ModelManager
from steadyrank.service.rpc import deadline_of, requested_version, rpc
from steadyrank.service.servable import Servable
from steadyrank.service.status import invalid, not_found, shown, unimplemented
from steadyrank.service.telemetry import ServerMetrics
from steadyrank.service.tensors import (
    Limits,
    check_inputs,
    output_filter,
    parse_inputs,
    to_proto,
)

DEFAULT_SIGNATURE = SERVING_DEFAULT
State = get_model_status_pb2.ModelVersionStatus.State


# Inputs above this many elements are decoded in a worker thread, not on the event loop.
OFF_LOOP_ELEMENTS = 10_000


def runnable_signatures(servable: Servable) -> list[str]:
    """The signatures Predict runs (``__saved_model_init_op`` and the like are internal)."""
    return sorted(n for n in servable.signature_defs if not n.startswith("__"))


def _signature(servable: Servable, name: str) -> Any:
    name = name or DEFAULT_SIGNATURE
    if name not in servable.signature_defs or name.startswith("__"):
        raise invalid(f"model_spec.signature_name: model {servable.name!r} has no signature "
                      f"{shown(name)!r} to run; signatures: {runnable_signatures(servable)}")
    return name, servable.signature_defs[name]


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """``tensorflow.serving.PredictionService``."""

    def __init__(self, manager: ModelManager, scorer: Scorer, metrics: ServerMetrics,
                 limits: Limits | None = None) -> None:
        self.manager = manager
        self.scorer = scorer
        self.metrics = metrics
        self.limits = limits or Limits()

    def _servable(self, spec: Any) -> Servable:
        return self.manager.get(spec.name, requested_version(spec))

    async def run(self, servable: Servable, signature: str, inputs: dict[str, np.ndarray],
                  until: float | None) -> dict[str, np.ndarray]:
        """Runs a signature; the scoring signatures check ids and go through the scorer."""
        user, item = servable.user_input, servable.item_input
        if signature == DEFAULT_SIGNATURE:
            servable.check_users(f"inputs[{user!r}]", inputs[user])
            servable.check_items(f"inputs[{item!r}]", inputs[item])
            return {"score": await self.scorer.score(servable, inputs[user], inputs[item],
                                                     until)}
        if signature == RANK:
            users = np.asarray(inputs[user], np.int64).reshape(1)
            servable.check_users(f"inputs[{user!r}]", users)
            servable.check_items(f"inputs[{ITEM_IDS!r}]", inputs[ITEM_IDS])
            users = np.repeat(users, inputs[ITEM_IDS].size)
            return {"scores": await self.scorer.score(servable, users, inputs[ITEM_IDS],
                                                      until)}
        if "item_ids" in inputs:
            servable.check_items("inputs['item_ids']", inputs["item_ids"])
        return await self.scorer.call(servable, signature, inputs)

    @rpc("Predict")
    async def Predict(  # noqa: N802 (gRPC method name)
            self, request: predict_pb2.PredictRequest,
            context: grpc.aio.ServicerContext) -> predict_pb2.PredictResponse:
        """Runs the requested signature on the request's input tensors."""
        servable = self._servable(request.model_spec)
        name, signature = _signature(servable, request.model_spec.signature_name)
        # Sizes on the declared shapes first: nothing is materialized for a refused request.
        largest = check_inputs(request.inputs, signature, name, self.limits)
        if largest > OFF_LOOP_ELEMENTS:
            inputs = await asyncio.get_running_loop().run_in_executor(
                None, parse_inputs, request.inputs, signature, name, self.limits)
        else:
            inputs = parse_inputs(request.inputs, signature, name, self.limits)
        wanted = output_filter(list(signature.outputs), list(request.output_filter), name)
        outputs = await self.run(servable, name, inputs, deadline_of(context))
        response = predict_pb2.PredictResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        response.model_spec.signature_name = name
        for key in wanted:
            response.outputs[key].CopyFrom(to_proto(outputs[key]))
        return response

    @rpc("GetModelMetadata")
    async def GetModelMetadata(  # noqa: N802
            self, request: get_model_metadata_pb2.GetModelMetadataRequest,
            context: grpc.aio.ServicerContext) -> get_model_metadata_pb2.GetModelMetadataResponse:
        """The model's SignatureDefs (``metadata_field: "signature_def"``)."""
        if not request.metadata_field:
            raise invalid("metadata_field: empty; ask for \"signature_def\"")
        unsupported = [f for f in request.metadata_field if f != "signature_def"]
        if unsupported:
            raise invalid(f"metadata_field: unsupported field {unsupported[0]!r}; "
                          "supported: \"signature_def\"")
        servable = self._servable(request.model_spec)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        signatures = get_model_metadata_pb2.SignatureDefMap()
        for key, value in servable.signature_defs.items():
            signatures.signature_def[key].CopyFrom(value)
        response.metadata["signature_def"].Pack(signatures)
        return response

    @rpc("Regress")
    async def Regress(  # noqa: N802
            self, request: regression_pb2.RegressionRequest,
            context: grpc.aio.ServicerContext) -> regression_pb2.RegressionResponse:
        """Predicted ratings of ``tf.Example`` inputs with int64 ``user_id`` and ``item_id``."""
        servable = self._servable(request.model_spec)
        name = request.model_spec.signature_name or DEFAULT_SIGNATURE
        if name != DEFAULT_SIGNATURE:
            raise invalid(f"model_spec.signature_name: Regress runs {DEFAULT_SIGNATURE!r}, "
                          f"got {name!r}")
        if servable.task != "rating":
            raise unimplemented(f"Regress: model {servable.name!r} predicts probabilities "
                                f"(task {servable.task!r}); use Predict")
        users, items = examples_to_pairs(request.input, self.limits.max_elements)
        outputs = await self.run(servable, DEFAULT_SIGNATURE,
                                 {servable.user_input: users, servable.item_input: items},
                                 deadline_of(context))
        response = regression_pb2.RegressionResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        response.model_spec.signature_name = name
        for value in outputs["score"]:
            response.result.regressions.add(value=float(value))
        return response

    @rpc("Classify")
    async def Classify(  # noqa: N802
            self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """Not offered: ranking models have no classes; use Predict or Rank."""
        raise unimplemented("Classify: SteadyRank models are rankers, not classifiers; use "
                            "Predict (signature serving_default) or RankingService.Rank")

    @rpc("MultiInference")
    async def MultiInference(  # noqa: N802
            self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """Not offered; use Predict or Regress."""
        raise unimplemented("MultiInference: not supported; use Predict or Regress")


def _int64_feature(example: Any, context: Any, key: str, where: str) -> int:
    for source in (example, context):
        if source is not None and key in source.features.feature:
            values = source.features.feature[key].int64_list.value
            if len(values) != 1:
                raise invalid(f"{where}: feature {key!r} must hold exactly one int64 value, "
                              f"got {len(values)}")
            return int(values[0])
    raise invalid(f"{where}: missing int64 feature {key!r}")


def examples_to_pairs(data: Any, max_examples: int = 100_000) -> tuple[np.ndarray, np.ndarray]:
    """(user_id, item_id) arrays from a TF Serving ``Input`` of tf.Examples."""
    kind = data.WhichOneof("kind")
    if kind is None:
        raise invalid("input: empty; send example_list or example_list_with_context")
    block = getattr(data, kind)
    context = block.context if kind == "example_list_with_context" else None
    if not block.examples:
        raise invalid(f"input.{kind}.examples: empty")
    if len(block.examples) > max_examples:
        raise invalid(f"input.{kind}.examples: {len(block.examples)} examples, at most "
                      f"{max_examples} (server flag --max-request-elements)")
    users, items = [], []
    for i, example in enumerate(block.examples):
        where = f"input.{kind}.examples[{i}]"
        users.append(_int64_feature(example, context, "user_id", where))
        items.append(_int64_feature(example, context, "item_id", where))
    return np.array(users, np.int64), np.array(items, np.int64)


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """``tensorflow.serving.ModelService``: version states of a model."""

    def __init__(self, manager: ModelManager, metrics: ServerMetrics) -> None:
        self.manager = manager
        self.metrics = metrics

    @rpc("GetModelStatus")
    async def GetModelStatus(  # noqa: N802
            self, request: get_model_status_pb2.GetModelStatusRequest,
            context: grpc.aio.ServicerContext) -> get_model_status_pb2.GetModelStatusResponse:
        """Every known version of the model, or the requested one, with state and error.

        A load failure has error code UNKNOWN; a loaded version whose last call failed (a
        shadow replica) is AVAILABLE with error code UNAVAILABLE until a call works again.
        """
        statuses = self.manager.status(request.model_spec.name)
        version = requested_version(request.model_spec)
        if version is not None:
            statuses = [s for s in statuses if s.version == version]
            if not statuses:
                raise not_found(f"model {request.model_spec.name!r} has no version {version}")
        response = get_model_status_pb2.GetModelStatusResponse()
        for status in statuses:
            entry = response.model_version_status.add(version=status.version,
                                                      state=State.Value(status.state))
            if status.error:
                entry.status.error_code = error_codes_pb2.UNKNOWN
                entry.status.error_message = status.error
            elif status.health:
                entry.status.error_code = error_codes_pb2.UNAVAILABLE
                entry.status.error_message = status.health
        return response

    @rpc("HandleReloadConfigRequest")
    async def HandleReloadConfigRequest(  # noqa: N802
            self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """Not offered: models are discovered from the base folder."""
        raise unimplemented("HandleReloadConfigRequest: models are discovered by polling "
                            "--model-base-path; add or remove folders there instead")
