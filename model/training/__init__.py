"""Training: the trainer (deterministic runs, checkpoints, ensembles, warm start), the
optimizers (row-sparse ones for the embedding tables, weight averaging, learning-rate decay),
the distribution strategies and local clusters, and the train-evaluate-export workflow.

May import: ``steadyrank.core``, ``steadyrank.ops``, ``steadyrank.model.config``, ``data``,
``network``, ``artifact`` and ``measures``; never ``evaluation`` or ``publishing``.
"""
