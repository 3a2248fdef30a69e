"""The generated gRPC stubs of ``proto/steadyrank/ranking.proto``, imported statically.

They are generated at install or build time (see :mod:`steadyrank.service.protos`); this
import fails with a message saying how to regenerate them when they are missing or were
made from another version of the ``.proto``. It writes nothing, and needs only grpc and
protobuf, never TensorFlow, so clients (``steadyrank rank``, ``health``) start fast.
"""

from steadyrank.service import protos

protos.check()

from steadyrank.service._generated import ranking_pb2, ranking_pb2_grpc  # noqa: E402

__all__ = ["ranking_pb2", "ranking_pb2_grpc"]
