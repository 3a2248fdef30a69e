"""The generated gRPC stubs of ``proto/steadyrank/ranking.proto``, imported statically.

``make install`` generates them (``python -m steadyrank.service.protos``); if they are
missing or older than the ``.proto`` (a fresh checkout, an edited proto), the first import
generates them. Importing this module needs only grpc and protobuf, never TensorFlow, so
clients (``steadyrank rank``, ``health``) start fast.
"""

from steadyrank.service import protos

protos.ensure()

from steadyrank.service._generated import ranking_pb2, ranking_pb2_grpc  # noqa: E402

__all__ = ["ranking_pb2", "ranking_pb2_grpc"]
