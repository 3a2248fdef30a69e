"""SteadyRank service, in two rooms that never import each other:

- ``serve``: the gRPC server (TF Serving's API and the Rank API), its model manager,
  batcher, unknown-id policy, built-in monitor (shadow scoring, version churn), request
  recorder and the supervisor of worker processes;
- ``client``: the clients (``rank``, ``loadtest``, ``traffic``, ``health``) and
  ``steadyrank monitor``, the live monitor for any TF Serving fleet;

and the modules both use: ``settings`` (flags and shared limits), ``stubs``/``protos`` (the
generated gRPC code), ``request_schema``, ``pair_metrics`` and ``recorded_requests``.

May import ``steadyrank.core``, ``steadyrank.ops`` and, of ``steadyrank.model``, only what
reads exports (``model.artifact``'s layout, reader and gate) and the metric functions
(``model.measures.metrics``): the server loads no training code and no TFRS.
"""
