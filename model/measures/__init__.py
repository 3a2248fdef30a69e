"""Measures: reproducibility metrics between two models' predictions (relative and absolute
PD, top-k swap, Kendall tau) and the accuracy of one model's scores.

A leaf room: it imports numpy and the config and schema modules only, so training,
evaluation, publishing and the server's live monitor all use the same definitions.
"""
