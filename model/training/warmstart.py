"""Warm start: a retrain begins from the weights of the version it will replace.

Each member's variables are matched to the previous export's in creation order (the same
architecture creates them in the same order; Keras' automatic layer numbering, which
depends on what else the process built, makes names unreliable), checked by shape and by
the variable's own name (kernel, bias, embeddings, ...). A retrain
that starts where the serving version stands moves less than one from a fresh random init,
which lowers version-to-version churn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from steadyrank.model.artifact.reader import ExportError, load


def _leaf(name: str) -> str:
    return name.split(":")[0].rsplit("/", 1)[-1]


def previous_members(path: str | Path) -> list[Any]:
    """The trained members of an export (loaded SavedModel objects with ``variables``)."""
    return list(load(path).module.members)


def copy_weights(target: Any, source: Any, where: str = "") -> int:
    """Assigns every variable of ``target`` from its counterpart in ``source``; returns how
    many. Raises ExportError naming the first variable that has no counterpart."""
    ours, theirs = list(target.variables), list(source.variables)
    what = where or "the previous version"
    if len(ours) != len(theirs):
        raise ExportError(f"cannot warm start from {what}: it has {len(theirs)} variables, "
                          f"this model {len(ours)} (the architecture changed; train from "
                          "scratch)")
    for var, other in zip(ours, theirs, strict=True):
        if tuple(other.shape) != tuple(var.shape) or _leaf(other.name) != _leaf(var.name):
            raise ExportError(f"cannot warm start from {what}: {var.name} {tuple(var.shape)} "
                              f"meets {other.name} {tuple(other.shape)} there (the "
                              "architecture changed; train from scratch)")
    for var, other in zip(ours, theirs, strict=True):
        var.assign(other)
    return len(ours)
