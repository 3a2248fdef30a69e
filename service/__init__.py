"""SteadyRank service: the gRPC server, its model manager, batcher, monitor and clients,
the supervisor of worker processes, and ``steadyrank up``'s local stack.

May import ``steadyrank.core``, ``steadyrank.ops`` and, of ``steadyrank.model``, only what
reads exports (``model.artifact``'s layout, reader and gate) and the metric functions
(``model.evaluation.metrics``): the server loads no training code and no TFRS.
"""
