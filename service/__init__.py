"""SteadyRank service: the gRPC server, its model manager, batcher, monitor and clients."""

from steadyrank.model import keras2  # noqa: F401  (Keras 2 for TFRS, before any import of it)
