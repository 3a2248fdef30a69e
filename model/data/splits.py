"""Data preparation: the rows of each split, and the statistics pass over the train rows.

The eval split is the ``data.eval`` files, or carved from the train rows: ``random`` takes
the last ``eval_fraction`` of a permutation drawn from ``split_seed``, ``time`` the latest
rows by ``time_column`` (ties by row order). A split is a mask over the stream's rows (one
byte a row), so the rows stay in their files. With ``validation`` the eval part is carved
from the train split instead (seed ``split_seed + 1``), for tuning without the eval split.
Every row of both splits is converted once here, so bad data fails before training starts.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from steadyrank.core.log import Log, Progress, quiet
from steadyrank.model.config import Config
from steadyrank.model.data.batches import Lookups, Rows, convert
from steadyrank.model.data.presets import resolve_schema, time_column
from steadyrank.model.data.sources import Reader, data_checksum, open_readers
from steadyrank.model.data.stats import DataStats, StatsBuilder
from steadyrank.model.schema import Schema

READ_ROWS = 65536  # rows per batch read from the files


@dataclass
class RowSet:
    """The rows of a reader that belong to one split."""

    reader: Reader
    mask: np.ndarray | None  # over the reader's rows; None: all of them
    rows: int

    def batches(self, schema: Schema, names: tuple[str, ...], time: str = "",
                start: int = 0, lookups: Lookups | None = None
                ) -> Iterator[Rows]:
        """The split's rows from its ``start``-th on, converted (``names``: the model
        inputs to convert; ``lookups``: see :func:`~steadyrank.model.data.batches.convert`),
        ``ordinals`` numbering the split's rows."""
        if self.mask is None:
            first = start
        else:  # the stream ordinal of the split's start-th row
            selected = np.flatnonzero(self.mask)
            first = int(selected[start]) if start < len(selected) else len(self.mask)
        seen = start
        for chunk in self.reader.chunks(READ_ROWS, first):
            rows = convert(chunk, schema, names, time, lookups)
            if self.mask is not None:
                rows = rows.take(self.mask[chunk.start:chunk.start + len(rows)])
            rows.ordinals = np.arange(seen, seen + len(rows), dtype=np.int64)
            seen += len(rows)
            if len(rows):
                yield rows


@dataclass
class Prepared:
    """An experiment's data: schema, splits and the train rows' statistics."""

    config: Config
    schema: Schema
    train: RowSet
    eval: RowSet
    stats: DataStats
    checksum: str
    time_column: str

    @property
    def model_inputs(self) -> tuple[str, ...]:
        """The features a model is fed (ids and context; facts are looked up by id)."""
        return tuple(f.name for f in self.schema.features if not f.is_fact)

    def eval_batches(self, names: tuple[str, ...] | None = None) -> Iterator[Rows]:
        """The eval rows, converted, in order."""
        return self.eval.batches(self.schema, names or self.model_inputs, self.time_column)

    def train_batches(self, start: int = 0, lookups: Lookups | None = None
                      ) -> Iterator[Rows]:
        """The train rows in stream order, converted, from the ``start``-th on."""
        return self.train.batches(self.schema, self.model_inputs, self.time_column, start,
                                  lookups)


def _times(reader: Reader, schema: Schema, column: str) -> np.ndarray:
    """Every row's time (a pass over the rows)."""
    parts = [convert(chunk, schema, (), column).times for chunk in reader.chunks(READ_ROWS)]
    return np.concatenate(parts) if parts else np.zeros(0)


def _check(rows: RowSet, schema: Schema, time_col: str) -> None:
    """Converts every row once, so bad data in eval files fails before training starts."""
    names = tuple(f.name for f in schema.features)
    for _ in rows.batches(schema, names, time_col):
        pass


def carve(n: int, fraction: float, seed: int, by: str, times: np.ndarray | None
          ) -> np.ndarray:
    """The eval mask over ``n`` rows: the last ``round(n * fraction)`` (at least 1) of a
    permutation drawn from ``seed`` (``random``), or of the rows ordered by ``times``
    (``time``; ties by row order)."""
    if not 0 < fraction < 1:
        raise ValueError(f"eval_fraction must be in (0, 1), got {fraction}")
    n_eval = max(1, int(round(n * fraction)))
    if by == "random":
        order = np.random.default_rng(seed).permutation(n)
    elif by == "time":
        order = np.argsort(times, kind="stable")
    else:
        raise ValueError(f"split 'by' must be 'random' or 'time', got {by!r}")
    mask = np.zeros(n, bool)
    mask[order[n - n_eval:]] = True
    return mask


def statistics(rows: RowSet, schema: Schema, time_col: str, log: Log = quiet) -> DataStats:
    """The statistics pass over ``rows``, with progress lines (rows/s, ETA) on ``log``."""
    builder = StatsBuilder(schema)
    names = tuple(f.name for f in schema.features)
    progress = Progress("statistics", rows.rows, log)
    for part in rows.batches(schema, names, time_col):
        builder.add(part.inputs, part.labels, part.times, part.ordinals)
        progress.update(builder.rows)
    return builder.result()


def prepare_data(config: Config, validation: bool = False, base: Path | None = None,
                 log: Log = quiet) -> Prepared:
    """Opens the configured data, splits it and runs the statistics pass on the train rows.

    ``base``: the folder relative file names are read from (default: the working folder).
    """
    schema = resolve_schema(config)
    d = config.data
    train_reader, eval_reader = open_readers(config, schema, base)
    time_col = time_column(config)
    n = train_reader.count_rows()
    if n < 2:
        raise ValueError(f"{train_reader.files[0]}: {n} rows; at least 2 are needed")
    times = _times(train_reader, schema, time_col) if d.split == "time" else None
    if eval_reader is None:
        eval_mask = carve(n, d.eval_fraction, d.split_seed, d.split, times)
        train = RowSet(train_reader, ~eval_mask, int(n - eval_mask.sum()))
        evaluation = RowSet(train_reader, eval_mask, int(eval_mask.sum()))
    else:
        train = RowSet(train_reader, None, n)
        evaluation = RowSet(eval_reader, None, eval_reader.count_rows())
    if validation:
        base_mask = train.mask if train.mask is not None else np.ones(n, bool)
        inside = np.flatnonzero(base_mask)
        held = carve(len(inside), d.eval_fraction, d.split_seed + 1, d.split,
                     times[inside] if times is not None else None)
        val_mask, train_mask = np.zeros(n, bool), np.zeros(n, bool)
        val_mask[inside[held]], train_mask[inside[~held]] = True, True
        train = RowSet(train_reader, train_mask, int(train_mask.sum()))
        evaluation = RowSet(train_reader, val_mask, int(val_mask.sum()))
    stats = statistics(train, schema, time_col, log)
    if eval_reader is not None:
        _check(evaluation, schema, time_col)
    return Prepared(config, schema, train, evaluation, stats,
                    data_checksum(config, (train_reader, eval_reader)), time_col)
