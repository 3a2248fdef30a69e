"""Warm start: a retrain begins from the weights of the version it will replace.

Each member's variables are matched to the previous export's in creation order (the same
architecture creates them in the same order; Keras' automatic layer numbering, which
depends on what else the process built, makes names unreliable), checked by shape and by
the variable's own name (kernel, bias, embeddings, ...). A retrain
that starts where the serving version stands moves less than one from a fresh random init,
which lowers version-to-version churn.

Tables may grow between versions (a model trained continuously meets new values): with
``row_maps`` a table whose vocabulary changed takes the previous version's row of every
value both vocabularies hold (and the out-of-vocabulary rows), matched by value
(:func:`table_row_maps`); rows of new values keep their fresh init.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from steadyrank.model.artifact.reader import ExportError, load
from steadyrank.model.network.features import table_specs


def _leaf(name: str) -> str:
    return name.split(":")[0].rsplit("/", 1)[-1]


def previous_members(path: str | Path) -> list[Any]:
    """The trained members of an export (loaded SavedModel objects with ``variables``)."""
    return list(load(path).module.members)


TABLE = re.compile(r"table_([^/]+)/embedding/embeddings")


def table_name(name: str) -> str | None:
    """The table (feature) an embedding variable named ``name`` belongs to, or None."""
    found = TABLE.search(name)
    return found.group(1) if found else None


def copy_weights(target: Any, source: Any, where: str = "",
                 row_maps: dict[str, tuple[np.ndarray, np.ndarray]] | None = None) -> int:
    """Assigns every variable of ``target`` from its counterpart in ``source``; returns how
    many. ``row_maps`` (table -> (previous rows, new rows)): a table of another size takes
    those rows. Raises ExportError naming the first variable that has no counterpart."""
    ours, theirs = list(target.variables), list(source.variables)
    maps = row_maps or {}
    what = where or "the previous version"
    if len(ours) != len(theirs):
        raise ExportError(f"cannot warm start from {what}: it has {len(theirs)} variables, "
                          f"this model {len(ours)} (the architecture changed; train from "
                          "scratch)")
    for var, other in zip(ours, theirs, strict=True):
        remapped = table_name(var.name) in maps and tuple(other.shape[1:]) == tuple(var.shape[1:])
        if (tuple(other.shape) != tuple(var.shape) and not remapped) or \
                _leaf(other.name) != _leaf(var.name):
            raise ExportError(f"cannot warm start from {what}: {var.name} {tuple(var.shape)} "
                              f"meets {other.name} {tuple(other.shape)} there (the "
                              "architecture changed; train from scratch)")
    for var, other in zip(ours, theirs, strict=True):
        table = table_name(var.name)
        var.assign(remap_rows(var.numpy(), other.numpy(), maps[table]) if table in maps
                   else other)
    return len(ours)


def remap_rows(fresh: np.ndarray, old: np.ndarray, rows: tuple[np.ndarray, np.ndarray]
               ) -> np.ndarray:
    """``fresh`` with its rows ``rows[1]`` taken from ``old``'s rows ``rows[0]`` (the values
    both versions hold); the other rows keep their fresh values."""
    old_rows, new_rows = rows
    fresh[new_rows] = old[old_rows]
    return fresh


def table_row_maps(schema: Any, config: Any, old: Any, new: Any
                   ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """For each vocabulary table whose rows differ between the statistics ``old`` (the
    previous version's) and ``new``: (previous rows, new rows) of the values both keep, the
    out-of-vocabulary rows first. Hashed tables keep their rows and need no map."""
    before, after = table_specs(schema, old, config), table_specs(schema, new, config)
    maps = {}
    for name, spec in after.items():
        prior = before.get(name)
        if prior is None or spec.hash_buckets:
            continue
        if (len(prior.vocabulary) == len(spec.vocabulary) and prior.oov_buckets ==
                spec.oov_buckets and np.array_equal(prior.vocabulary, spec.vocabulary)):
            continue
        where = {v: i for i, v in enumerate(prior.vocabulary.tolist())}
        pairs = [(where[v] + prior.oov_buckets, i + spec.oov_buckets)
                 for i, v in enumerate(spec.vocabulary.tolist()) if v in where]
        oov = min(prior.oov_buckets, spec.oov_buckets)
        old_rows = np.array([*range(oov), *(p[0] for p in pairs)], np.int64)
        new_rows = np.array([*range(oov), *(p[1] for p in pairs)], np.int64)
        maps[name] = (old_rows, new_rows)
    return maps
