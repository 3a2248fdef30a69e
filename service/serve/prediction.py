"""TensorFlow Serving's ``PredictionService`` and ``ModelService`` over our model manager.

Any stock TF Serving client works unchanged:

- ``Predict`` runs any signature of the export. The row-wise ones (``serving_default``,
  ``examples``, and ``rank``, scored as ``serving_default`` rows) go through the batcher.
- ``Classify`` (a ``binary`` model: class "0" and "1" with their probabilities) and
  ``Regress`` (a ``rating`` model) run the export's ``examples`` signature on an
  ``ExampleList``, or an ``ExampleListWithContext`` whose context is merged into each
  example, as ``input.proto`` specifies (a key in both is refused: its meaning is undefined).
- ``GetModelMetadata`` returns the SignatureDefs (``RankingService.GetRequestSchema`` the
  features, by name and dtype); ``GetModelStatus`` reports versions and
  their states. ``MultiInference`` answers UNIMPLEMENTED.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import numpy as np
from tensorflow.core.protobuf import error_codes_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from steadyrank.model.artifact.layout import (
    EXAMPLES,
    EXAMPLES_INPUT,
    ITEM_IDS,
    RANK,
    SCORE,
    SCORES,
    SERVING_DEFAULT,
)
from steadyrank.service.recorded_requests import RequestRecorder
from steadyrank.service.serve.batching import Scorer
from steadyrank.service.serve.manager import ModelManager
from steadyrank.service.serve.rpc import deadline_of, requested_version, rpc
from steadyrank.service.serve.servable import Servable
from steadyrank.service.serve.shadow import ShadowScorer
from steadyrank.service.serve.status import invalid, not_found, shown, unimplemented
from steadyrank.service.serve.telemetry import ServerMetrics
from steadyrank.service.serve.tensors import (
    Limits,
    check_inputs,
    output_filter,
    parse_inputs,
    to_proto,
)
from steadyrank.service.serve.unknown_ids import UnknownIds

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
                 limits: Limits | None = None, shadow: ShadowScorer | None = None,
                 unknown_ids: UnknownIds | None = None,
                 recorder: RequestRecorder | None = None) -> None:
        self.manager = manager
        self.recorder = recorder
        self.scorer = scorer
        self.metrics = metrics
        self.limits = limits or Limits()
        self.shadow = shadow
        self.unknown_ids = unknown_ids or UnknownIds("score", metrics)

    def _servable(self, spec: Any) -> Servable:
        return self.manager.get(spec.name, requested_version(spec))

    async def run(self, servable: Servable, signature: str, inputs: dict[str, np.ndarray],
                  until: float | None) -> dict[str, np.ndarray]:
        """Runs a signature; the row-wise ones check ids and go through the batcher."""
        if signature in (DEFAULT_SIGNATURE, EXAMPLES):
            if signature == EXAMPLES:
                self.unknown_ids.check_examples(servable, inputs[EXAMPLES_INPUT])
            else:
                self.unknown_ids.check_rows(servable, inputs)
            outputs = await self.scorer.rows(servable, signature, inputs, until)
            if self.shadow is not None:
                self.shadow.offer(servable, signature, inputs, outputs[SCORE], ranked=False,
                                  replica=self.manager.replica_label(servable.name) == "a")
            if self.recorder is not None and signature == DEFAULT_SIGNATURE:
                self.recorder.offer(servable.name, inputs, ranked=False)
            return outputs
        if signature == RANK and servable.ranking is not None:
            user = servable.user_input
            self.unknown_ids.check(servable, {
                "user": (f"inputs[{user!r}]", np.asarray(inputs[user]).reshape(1)),
                "item": (f"inputs[{ITEM_IDS!r}]", np.asarray(inputs[ITEM_IDS]))})
            return {SCORES: await self.scorer.score(servable, servable.rank_rows(inputs),
                                                    until)}
        if ITEM_IDS in inputs:  # rank_with_features: a user of its own, the candidates
            self.unknown_ids.check(servable, {
                "item": (f"inputs[{ITEM_IDS!r}]", np.asarray(inputs[ITEM_IDS]))})
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
                None, parse_inputs, request.inputs, signature, name, self.limits, True)
        else:
            inputs = parse_inputs(request.inputs, signature, name, self.limits, checked=True)
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
            raise invalid(f"metadata_field: unsupported field {shown(unsupported[0])!r}; "
                          "supported: \"signature_def\" (RankingService.GetRequestSchema "
                          "describes the features)")
        servable = self._servable(request.model_spec)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        signatures = get_model_metadata_pb2.SignatureDefMap()
        for key, value in servable.signature_defs.items():
            signatures.signature_def[key].CopyFrom(value)
        response.metadata["signature_def"].Pack(signatures)
        return response

    def _examples(self, request: Any, method: str, task: str) -> tuple[Servable, np.ndarray]:
        """The model and the request's serialized examples (context merged in), checked."""
        servable = self._servable(request.model_spec)
        name = request.model_spec.signature_name
        if name not in ("", DEFAULT_SIGNATURE, EXAMPLES):
            raise invalid(f"model_spec.signature_name: {method} runs the model's tf.Example "
                          f"signature {EXAMPLES!r} (or say {DEFAULT_SIGNATURE!r}), got "
                          f"{shown(name)!r}")
        if servable.task != task:
            other = "Classify" if servable.task == "binary" else "Regress"
            raise unimplemented(f"{method}: model {servable.name!r} has task "
                                f"{servable.task!r}; use {other} (or Predict)")
        if EXAMPLES not in servable.signature_defs:
            raise unimplemented(f"{method}: model {servable.name!r} version "
                                f"{servable.version} has no {EXAMPLES!r} signature (exported "
                                "before it existed); use Predict")
        return servable, serialized_examples(request.input, self.limits)

    async def _score_examples(self, servable: Servable, examples: np.ndarray,
                              context: grpc.aio.ServicerContext) -> np.ndarray:
        return (await self.run(servable, EXAMPLES, {EXAMPLES_INPUT: examples},
                               deadline_of(context)))[SCORE]

    @rpc("Regress")
    async def Regress(  # noqa: N802
            self, request: regression_pb2.RegressionRequest,
            context: grpc.aio.ServicerContext) -> regression_pb2.RegressionResponse:
        """A ``rating`` model's prediction for each tf.Example."""
        servable, examples = self._examples(request, "Regress", "rating")
        scores = await self._score_examples(servable, examples, context)
        response = regression_pb2.RegressionResponse()
        _answering(response.model_spec, servable)
        for value in scores:
            response.result.regressions.add(value=float(value))
        return response

    @rpc("Classify")
    async def Classify(  # noqa: N802
            self, request: classification_pb2.ClassificationRequest,
            context: grpc.aio.ServicerContext) -> classification_pb2.ClassificationResponse:
        """A ``binary`` model's class scores for each tf.Example: class "0" with 1 - p and
        class "1" with p, the probability of a positive."""
        servable, examples = self._examples(request, "Classify", "binary")
        scores = await self._score_examples(servable, examples, context)
        response = classification_pb2.ClassificationResponse()
        _answering(response.model_spec, servable)
        for p in scores.astype(np.float64):
            classes = response.result.classifications.add().classes
            classes.add(label="0", score=float(1.0 - p))
            classes.add(label="1", score=float(p))
        return response

    @rpc("MultiInference")
    async def MultiInference(  # noqa: N802
            self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """Not offered; use Classify, Regress or Predict."""
        raise unimplemented("MultiInference: not supported; send Classify, Regress or "
                            "Predict calls")


def _answering(spec: Any, servable: Servable) -> None:
    """Fills a response's model_spec with the version that answered."""
    spec.name = servable.name
    spec.version.value = servable.version
    spec.signature_name = EXAMPLES


def serialized_examples(data: Any, limits: Limits) -> np.ndarray:
    """The serialized tf.Examples of a TF Serving ``Input``, the context merged into each.

    Protobuf merges concatenated messages, so ``context + example`` is the merged example.
    Sizes are checked before anything is built: at most ``limits.max_elements`` examples
    and ``limits.max_string_bytes`` bytes of merged examples (server flags
    --max-request-elements, --max-string-bytes). A feature key in both the context and an
    example is refused (``input.proto`` leaves its meaning undefined).
    """
    kind = data.WhichOneof("kind")
    if kind is None:
        raise invalid("input: empty; send example_list or example_list_with_context")
    block = getattr(data, kind)
    where = f"input.{kind}"
    if not block.examples:
        raise invalid(f"{where}.examples: empty")
    if len(block.examples) > limits.max_elements:
        raise invalid(f"{where}.examples: {len(block.examples)} examples, at most "
                      f"{limits.max_elements} (server flag --max-request-elements)")
    context = block.context if kind == "example_list_with_context" else None
    shared = context.SerializeToString() if context is not None else b""
    total = sum(e.ByteSize() for e in block.examples) + len(shared) * len(block.examples)
    if total > limits.max_string_bytes:
        raise invalid(f"{where}: {total} bytes of examples with the context merged in, at "
                      f"most {limits.max_string_bytes} (server flag --max-string-bytes)")
    keys = set(context.features.feature) if context is not None else set()
    out = np.empty(len(block.examples), object)
    for i, example in enumerate(block.examples):
        if keys:
            both = keys.intersection(example.features.feature)
            if both:
                raise invalid(f"{where}.examples[{i}]: feature {shown(min(both))!r} is also "
                              "in the context (a key may be in one of them)")
        out[i] = shared + example.SerializeToString()
    return out


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
