"""Rows as the model takes them: converted batches, exact batch sizes, the streaming window
shuffle, and rows held in memory.

A :class:`Rows` is a batch of converted rows: each model input by name, the labels, each
row's time (its ordinal when there is no time column) and its ordinal within its split.
Conversion is vectorised per batch (Arrow to numpy), never per row.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from steadyrank.model.data import columns
from steadyrank.model.data.readers import Chunk
from steadyrank.model.schema import Schema

LABEL = "sr_label"  # the label's key in a training batch (beside the model inputs)
ROWS = "sr_rows."  # + a feature's name: its table rows, looked up before the model
FACT_ROWS = "sr_facts."  # + an id's name: its row in the fact table, looked up before it


@dataclass(frozen=True)
class Lookups:
    """Vocabularies the data pipeline looks values up in, so the model is fed rows: each
    feature's table vocabulary (rows: position + 1, 0 out of vocabulary) and each id's fact
    table ids (rows: position + 1, 0 for an id without facts)."""

    tables: Mapping[str, pa.Array] = field(default_factory=dict)
    facts: Mapping[str, pa.Array] = field(default_factory=dict)


@dataclass
class Rows:
    """A batch of converted rows."""

    inputs: dict[str, np.ndarray]
    labels: np.ndarray
    times: np.ndarray
    ordinals: np.ndarray  # position within the split (0 .. rows - 1), in stream order

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, index: np.ndarray | slice) -> Rows:
        """The rows at ``index``."""
        return Rows({k: v[index] for k, v in self.inputs.items()}, self.labels[index],
                    self.times[index], self.ordinals[index])

    @property
    def nbytes(self) -> int:
        """Bytes held (a Python string counted at 64 bytes)."""
        total = self.labels.nbytes + self.times.nbytes + self.ordinals.nbytes
        for v in self.inputs.values():
            total += v.size * 64 if v.dtype == object else v.nbytes
        return total


def concat(parts: list[Rows]) -> Rows:
    """One batch of all ``parts``, in order."""
    if len(parts) == 1:
        return parts[0]
    return Rows({k: np.concatenate([p.inputs[k] for p in parts]) for k in parts[0].inputs},
                np.concatenate([p.labels for p in parts]),
                np.concatenate([p.times for p in parts]),
                np.concatenate([p.ordinals for p in parts]))


def convert(chunk: Chunk, schema: Schema, names: Iterable[str], time_column: str = "",
            lookups: Lookups | None = None) -> Rows:
    """A chunk's rows converted: the named features, the label, the time (or the stream
    ordinal); ``ordinals`` are the chunk's stream ordinals (the caller renumbers them).

    ``lookups``: features whose table rows (``sr_rows.NAME``) and ids whose fact rows
    (``sr_facts.NAME``) are looked up here, in Arrow, as the model's own lookups would; a
    feature with table rows is given without its values, so no Python object per value is
    made.
    """
    n = chunk.batch.num_rows
    ordinals = np.arange(chunk.start, chunk.start + n, dtype=np.int64)
    lookups = lookups or Lookups()
    inputs = {}
    for name in names:
        feature = schema.feature(name)
        if name in lookups.tables:
            inputs[ROWS + name] = columns.feature_rows(chunk, feature, lookups.tables[name])
        else:
            inputs[name] = columns.feature_values(chunk, feature)
        if name in lookups.facts:
            inputs[FACT_ROWS + name] = columns.feature_rows(chunk, feature, lookups.facts[name])
    times = (columns.time_values(chunk, time_column) if time_column
             else ordinals.astype(np.float64))
    return Rows(inputs, columns.label_values(chunk, schema.label), times, ordinals)


def rebatch(parts: Iterable[Rows], size: int) -> Iterator[Rows]:
    """The same rows in batches of exactly ``size`` (the last may be smaller)."""
    pending: list[Rows] = []
    held = 0
    for part in parts:
        pending.append(part)
        held += len(part)
        if held < size:
            continue
        rows = concat(pending)
        cut = (len(rows) // size) * size
        for start in range(0, cut, size):
            yield rows.take(slice(start, start + size))
        pending = [rows.take(slice(cut, None))] if cut < len(rows) else []
        held = len(rows) - cut
    if held:
        yield concat(pending)


def window_shuffled(parts: Iterable[Rows], window: int, rng: np.random.Generator
                    ) -> Iterator[Rows]:
    """Rows in stream order with each moved fewer than ``window`` places: row r gets the
    key r + u, u uniform in [0, window) drawn in stream order from ``rng``, and rows leave
    in key order as soon as no later row can come before them. The same order as sorting
    all keys at once (:func:`steadyrank.model.data.order.epoch_order`'s ``window:N`` over
    the stream's order), with at most ``window`` rows held."""
    held: Rows | None = None
    keys = np.zeros(0)
    rank = 0
    for part in parts:
        new_keys = rank + np.arange(len(part)) + rng.uniform(0.0, window, len(part))
        rank += len(part)
        held = part if held is None else concat([held, part])
        keys = np.concatenate([keys, new_keys])
        order = np.argsort(keys, kind="stable")
        ready = int(np.searchsorted(keys[order], rank, side="left"))  # keys < rank are final
        if ready:
            yield held.take(order[:ready])
            held, keys = held.take(order[ready:]), keys[order[ready:]]
    if held is not None and len(held):
        yield held.take(np.argsort(keys, kind="stable"))
