"""Training: the trainer (deterministic runs, checkpoints, ensembles, warm start), the
optimizer with weight averaging and learning-rate decay, the distribution strategies and
local clusters, and the train-evaluate-export workflow.

May import: ``steadyrank.core``, ``steadyrank.ops``, ``steadyrank.model.config``, ``data``,
``network``, ``artifact`` and evaluation's measures (``evaluation.metrics``,
``evaluation.accuracy``); never the rest of ``evaluation``.
"""
