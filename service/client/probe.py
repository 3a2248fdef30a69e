"""Health probe of a running server, light enough for a container healthcheck.

Only ``grpc`` and the health stubs are imported unless a model is named (its status comes
from TF Serving's ``ModelService``, whose stubs import TensorFlow).
"""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def health(server: str, model: str | None = None, timeout: float = 3.0) -> str:
    """"" if ``server`` reports SERVING (and ``model`` has an AVAILABLE version), else why not."""
    serving = health_pb2.HealthCheckResponse
    try:
        with grpc.insecure_channel(server) as chan:
            answer = health_pb2_grpc.HealthStub(chan).Check(health_pb2.HealthCheckRequest(),
                                                            timeout=timeout)
            if answer.status != serving.SERVING:
                return f"health status {serving.ServingStatus.Name(answer.status)}"
            if model:
                from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

                request = get_model_status_pb2.GetModelStatusRequest()
                request.model_spec.name = model
                states = model_service_pb2_grpc.ModelServiceStub(chan).GetModelStatus(
                    request, timeout=timeout).model_version_status
                if not any(s.state == s.AVAILABLE for s in states):
                    return f"model {model!r} has no AVAILABLE version"
    except grpc.RpcError as err:
        return f"{err.code().name}: {err.details()}"
    return ""
