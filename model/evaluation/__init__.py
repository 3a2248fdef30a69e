"""Evaluation: ``steadyrank compare`` (replica pairs per variant, their measures and
breakdowns, pair records) and its report, and ``steadyrank explain-pd``.

May import the rooms below it (``training``, ``network``, ``data``, ``artifact``,
``measures``, the config and schema); never ``publishing``.
"""
