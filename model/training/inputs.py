"""The training rows as tf.data batches, held in memory or streamed from the files.

Both paths give, for an order seed and an epoch, the same batches on every run:

- in memory (``data.load = "memory"``, or ``auto`` when the train rows fit
  ``data.memory_budget_mb``): the rows are converted once and each epoch gathers them in
  :func:`steadyrank.model.data.order.epoch_order`'s order (``full``, ``time`` by the time
  column, ``window:N``);
- streamed (``stream``, or ``auto`` when they do not fit): batches are read, converted in a
  background thread (whole batches, vectorised) and prefetched, never more than the
  shuffle window and a few batches in memory. ``time`` follows the files' row order (write
  them in time order), ``window:N`` shuffles that stream within a window of N rows, and
  ``full`` is refused: it needs every row at once.

Categorical features with a vocabulary are looked up here, in Arrow, as the batches are
read: the model takes their table rows (``sr_rows.NAME``, int64) and no Python string is
made per value. The exported model looks the values up itself, with the same vocabulary.

A run resumed inside an epoch skips the rows the checkpoint had consumed: the stream is
read again to that point (Parquet skips whole row groups when the order is ``time``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from steadyrank.core.log import Log, say
from steadyrank.model.config import ModelConfig, parse_shuffle
from steadyrank.model.data.batches import (
    FACT_ROWS,
    LABEL,
    ROWS,
    Lookups,
    Rows,
    concat,
    rebatch,
    window_shuffled,
)
from steadyrank.model.data.order import epoch_order
from steadyrank.model.data.splits import Prepared
from steadyrank.model.network.features import input_spec, lookups, table_specs


class InputError(ValueError):
    """The rows cannot be read as asked (``full`` shuffling of a stream)."""


def _dict(rows: Rows) -> dict[str, np.ndarray]:
    return {**rows.inputs, LABEL: rows.labels}


@dataclass
class TrainInput:
    """The train rows of a :class:`Prepared`, batched for each epoch."""

    prepared: Prepared
    batch_size: int
    shuffle: str
    in_memory: bool
    lookups: Lookups = field(default_factory=Lookups)  # rows looked up by the pipeline
    held: dict[str, tf.Tensor] | None = None  # the rows, when held in memory
    times: np.ndarray | None = None

    @property
    def rows(self) -> int:
        """Train rows per epoch."""
        return self.prepared.train.rows

    @property
    def steps(self) -> int:
        """Batches per epoch."""
        return -(-self.rows // self.batch_size)

    def signature(self) -> dict[str, tf.TensorSpec]:
        """The element spec of a batch: the model inputs (a looked-up feature's table rows,
        int64, as ``sr_rows.NAME``) and the label."""
        schema = self.prepared.schema
        specs = {}
        for name in self.prepared.model_inputs:
            spec = input_spec(schema.feature(name))
            if name in self.lookups.tables:
                specs[ROWS + name] = tf.TensorSpec(spec.shape, tf.int64, name=ROWS + name)
            else:
                specs[name] = spec
            if name in self.lookups.facts:
                specs[FACT_ROWS + name] = tf.TensorSpec(spec.shape, tf.int64,
                                                        name=FACT_ROWS + name)
        return {**specs, LABEL: tf.TensorSpec([None], tf.float32, name=LABEL)}

    def columns(self) -> dict[str, np.ndarray]:
        """The rows held in memory as numpy arrays (for parameter-server workers)."""
        if self.held is None:
            raise InputError("the rows are streamed, not held in memory")
        return {k: v.numpy() for k, v in self.held.items()}

    def order(self, seed: int, epoch: int) -> np.ndarray:
        """The epoch's row order over the held rows."""
        return epoch_order(self.times, self.shuffle, seed, epoch)

    def batches(self, order: np.ndarray) -> tf.data.Dataset:
        """Batches of the held rows at ``order``, in that order."""
        held = self.held
        return (tf.data.Dataset.from_tensor_slices(tf.constant(order, tf.int64))
                .batch(self.batch_size)
                .map(lambda i: {k: tf.gather(v, i) for k, v in held.items()},
                     num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
                .prefetch(2))

    def epoch(self, seed: int, epoch: int, skip: int = 0) -> tf.data.Dataset:
        """The epoch's batches for order seed ``seed``, after its first ``skip`` rows."""
        if self.in_memory:
            return self.batches(self.order(seed, epoch)[skip:])
        signature = self.signature()
        return tf.data.Dataset.from_generator(
            lambda: self._stream(seed, epoch, skip), output_signature=signature).prefetch(4)

    def _stream(self, seed: int, epoch: int, skip: int) -> Iterator[dict[str, np.ndarray]]:
        kind, window = parse_shuffle(self.shuffle)
        if kind == "window":
            parts = window_shuffled(self.prepared.train_batches(lookups=self.lookups), window,
                                    np.random.default_rng([seed, epoch]))
        else:  # time: the stream's own order, which can start anywhere
            parts, skip = self.prepared.train_batches(start=skip, lookups=self.lookups), 0
        if skip:
            parts = _dropped(parts, skip)
        for rows in rebatch(parts, self.batch_size):
            yield _dict(rows)


def _dropped(parts: Iterator[Rows], count: int) -> Iterator[Rows]:
    """``parts`` without their first ``count`` rows."""
    for rows in parts:
        if count >= len(rows):
            count -= len(rows)
            continue
        yield rows.take(slice(count, None)) if count else rows
        count = 0


def _estimate_bytes(prepared: Prepared, lookups: Lookups) -> int:
    """The train rows' memory when held, from the first batch."""
    first = next(prepared.train_batches(lookups=lookups), None)
    if first is None or not len(first):
        return 0
    return int(first.nbytes / len(first) * prepared.train.rows)


def make_input(prepared: Prepared, batch_size: int, shuffle: str, log: Log = say,
               model: ModelConfig | None = None) -> TrainInput:
    """The train rows, held in memory or streamed as ``data.load`` says; InputError for
    ``full`` shuffling of rows that are streamed. ``model``: the settings of the model these
    rows train (default ``prepared.config.model``); the rows the pipeline looks up follow
    its tables (a vocabulary threshold shrinks them), so one prepared dataset serves models
    of other settings, as `compare`'s variants are."""
    load = prepared.config.data.load
    budget = prepared.config.data.memory_budget_mb << 20
    found = lookups(prepared.schema, table_specs(prepared.schema, prepared.stats,
                                                  model or prepared.config.model),
                    prepared.stats, prepared.model_inputs)
    in_memory = load == "memory"
    if load == "auto":
        in_memory = _estimate_bytes(prepared, found) <= budget
    kind, _ = parse_shuffle(shuffle)
    if kind == "full" and not in_memory:
        why = ("data.load = \"stream\"" if load == "stream" else
               f"the {prepared.train.rows:,} train rows need more than "
               f"data.memory_budget_mb = {prepared.config.data.memory_budget_mb}")
        raise InputError(f"train.shuffle = \"full\" needs every train row in memory, and "
                         f"{why}: use train.shuffle = \"window:N\" (a shuffle buffer of N "
                         "rows over the stream) or \"time\", or raise the budget")
    if not in_memory:
        log(f"streaming {prepared.train.rows:,} train rows from "
            f"{len(prepared.train.reader.files)} file(s) ({shuffle} order)")
        return TrainInput(prepared, batch_size, shuffle, False, found)
    rows = concat(list(prepared.train_batches(lookups=found)))
    held = {k: tf.constant(v) for k, v in _dict(rows).items()}
    return TrainInput(prepared, batch_size, shuffle, True, found, held, rows.times)
