"""Optimizer slots that follow their rows from one continuous-training round to the next.

A round of continuous training warm-starts each replica from the serving version's weights;
the row-sparse optimizer of the tables (:mod:`.sparse_optimizers`) would otherwise start
afresh: every row's Adagrad accumulator back at its initial value (so a row trained for
weeks takes first-step-sized steps again), Lazy Adam's moments at zero. At the end of a
round the tables' slots are saved (one ``.npz`` per trained member); the next round
restores them into its optimizer, each surviving value's row from the row it had (the same
row maps as the tables: :func:`steadyrank.model.training.warmstart.table_row_maps`), new
values' rows from the optimizer's initial values. Lazy Adam's bias-correction step count
carries too (as the optimizer's ``step_offset``; the learning-rate schedule keeps its own
count).

The dense tower's Adam moments carry too, weight by weight (the tower's shapes do not
change between rounds): a fresh Adam's first steps move every weight by about the learning
rate whatever its gradient, which shakes a trained tower each round. Its step count does
not carry (it drives the learning-rate schedule), so the carried moments' bias correction
starts over: the first steps are about a third of their size, growing back over ~1,000
steps. A dense-Adam run's single optimizer (which holds the tables' slots too) starts
afresh, as does a run under a distribution strategy (its tables are sharded).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tf_keras as keras

from steadyrank.core.fileio import atomic_file
from steadyrank.model.training.sparse_optimizers import (
    CARRIED_SLOTS,
    PartedOptimizer,
    table_variables,
)
from steadyrank.model.training.warmstart import remap_rows, table_name

STEPS = "steps"
TOWER = "tower"


@dataclass(frozen=True)
class SlotCarry:
    """Where a run's table slots come from (``load_from``: a previous round's folder, or
    None to start afresh) and go to (``save_to``); one ``member-I.npz`` per member."""

    load_from: Path | None = None
    save_to: Path | None = None

    def files(self, member: int) -> tuple[Path | None, Path | None]:
        """(file to restore from, if it exists; file to save to) of member ``member``."""
        name = f"member-{member}.npz"
        source = self.load_from / name if self.load_from is not None else None
        return (source if source is not None and source.exists() else None,
                self.save_to / name if self.save_to is not None else None)


def carries(optimizer: keras.optimizers.Optimizer) -> bool:
    """Whether ``optimizer``'s table slots can be carried (a row-sparse tables' optimizer)."""
    return isinstance(optimizer, PartedOptimizer)


def _tower_moments(optimizer: PartedOptimizer) -> dict[str, Any]:
    """The tower's Adam moments by ``tower:I:m`` / ``tower:I:v`` (I: the weight's position)."""
    dense = optimizer.dense
    out = {}
    for kind, moments in (("m", getattr(dense, "_momentums", [])),
                          ("v", getattr(dense, "_velocities", []))):
        out |= {f"{TOWER}:{i}:{kind}": var for i, var in enumerate(moments)}
    return out


def table_slots(model: keras.Model, optimizer: PartedOptimizer) -> dict[str, np.ndarray]:
    """The tables' carried slots by ``I:TABLE:SLOT`` (I: the table variable's position, all
    towers'), the bias-correction step count, and the tower's Adam moments."""
    sparse = optimizer.embeddings
    out: dict[str, np.ndarray] = {STEPS: np.asarray(sparse.bias_steps(), np.int64)}
    for i, var in enumerate(table_variables(model)):
        slots = sparse.slots(var)
        for slot in CARRIED_SLOTS[sparse.kind]:
            out[f"{i}:{table_name(var.name)}:{slot}"] = slots[slot].numpy()
    out |= {key: var.numpy() for key, var in _tower_moments(optimizer).items()}
    return out


def save(path: Path, arrays: Mapping[str, np.ndarray]) -> Path:
    """Writes ``arrays`` to ``path`` atomically (a temporary file, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, "wb") as out:
        np.savez(out, **arrays)
    return path


def restore(model: keras.Model, optimizer: PartedOptimizer, path: Path,
            row_maps: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None) -> int:
    """Assigns the saved slots of ``path`` to ``optimizer``'s (built) slots of ``model``'s
    tables: whole where a table kept its rows, else through ``row_maps`` (previous rows, new
    rows). Returns how many slot variables were restored; ValueError when the file does
    not match the model (another optimizer or architecture)."""
    sparse = optimizer.embeddings
    maps = row_maps or {}
    with np.load(path) as saved:
        arrays = {k: saved[k] for k in saved.files}
    tables = table_variables(model)
    tower = _tower_moments(optimizer)
    expected = {f"{i}:{table_name(v.name)}:{slot}" for i, v in enumerate(tables)
                for slot in CARRIED_SLOTS[sparse.kind]} | set(tower)
    if set(arrays) - {STEPS} != expected:
        raise ValueError(f"{path}: its slots do not match this model's {sparse.kind} "
                         "tables and tower (another optimizer or architecture)")
    # Every value is worked out (and checked) before the first assignment: a file that does
    # not fit leaves the fresh slots as they are.
    values: list[tuple[Any, np.ndarray]] = []
    for key, var in tower.items():
        if arrays[key].shape != tuple(var.shape):
            raise ValueError(f"{path}: the tower's {key} has shape {arrays[key].shape}, "
                             f"this model's {tuple(var.shape)}")
        values.append((var, arrays[key]))
    for i, var in enumerate(tables):
        table = table_name(var.name)
        slots = sparse.slots(var)
        for slot in CARRIED_SLOTS[sparse.kind]:
            old, target = arrays[f"{i}:{table}:{slot}"], slots[slot]
            if old.shape == tuple(target.shape) and table not in maps:
                values.append((target, old))
            elif table in maps and old.shape[1:] == tuple(target.shape[1:]):
                values.append((target, remap_rows(target.numpy(), old, maps[table])))
            else:
                raise ValueError(f"{path}: table {table}'s {slot} has shape {old.shape}, "
                                 f"this model's {tuple(target.shape)}, and no row map")
    for target, value in values:
        target.assign(value)
    sparse.set_bias_steps(int(arrays[STEPS]))
    return len(values)
