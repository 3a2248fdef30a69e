"""Evaluation: reproducibility metrics (shared with the server's live monitor), accuracy,
``steadyrank compare`` and its report, and the replica trainer with its churn gate.

May import every other room of ``steadyrank.model``. ``metrics`` imports only numpy, so the
server can use it without the rest.
"""
