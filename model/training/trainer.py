"""Deterministic training with resumable checkpoints, for one model or a K-seed ensemble.

A run is fixed by (config, init seed, order seed, data): TensorFlow op determinism is on,
weights are initialised from the init seed, and each epoch's row order is drawn from (order
seed, epoch) as ``train.shuffle`` says. The order seed defaults to the init seed; replicas
differ by one or both (``steadyrank compare --vary``).

The model, the optimizer, the epoch and the rows it has consumed are checkpointed after every
epoch and, inside an epoch, every ``train.checkpoint_minutes`` (or ``checkpoint_steps``); a
killed run started again with the same checkpoint folder resumes at the last checkpoint,
inside the pass, and ends with exactly the weights an uninterrupted run would have.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras as keras

from steadyrank.core.errors import SteadyRankError
from steadyrank.core.fileio import atomic_write_json
from steadyrank.core.log import Log, Progress, say
from steadyrank.model.config import Config
from steadyrank.model.data.batches import LABEL
from steadyrank.model.data.splits import Prepared
from steadyrank.model.network.codistill import CoDistillation
from steadyrank.model.network.features import input_spec
from steadyrank.model.network.ranking import RankingModel
from steadyrank.model.schema import Schema
from steadyrank.model.training import slot_carry
from steadyrank.model.training.averaging import AveragingAdam
from steadyrank.model.training.distributed import (
    is_parameter_server,
    make_strategy,
    per_worker_dataset_fn,
    shard_layout,
)
from steadyrank.model.training.footprint import check_table_memory
from steadyrank.model.training.inputs import TrainInput, make_input
from steadyrank.model.training.slot_carry import SlotCarry
from steadyrank.model.training.sparse_optimizers import (
    averages_weights,
    make_training_optimizer,
    tower_optimizer,
)
from steadyrank.model.training.warmstart import copy_weights, previous_members


class TrainError(SteadyRankError, RuntimeError):
    """Training cannot start or go on (e.g. a checkpoint folder of a different run)."""


def _momentum_note(optimizer: Any) -> str:
    """'; momentum warmed up to only 0.9964 ...' when the warm-up kept the EMA under its
    target for the whole run (then a larger target would give the same model)."""
    optimizer = tower_optimizer(optimizer)
    if not isinstance(optimizer, AveragingAdam):
        return ""
    last = optimizer.last_momentum()
    if last is None or last >= optimizer.target_momentum - 1e-6:  # float32 momentum
        return ""
    steps = int(optimizer.iterations.numpy())
    return (f"; momentum warmed up to only {last:.4f} by the last of {steps:,} steps, "
            f"under the target {optimizer.target_momentum:g}")


def member_seeds(seed: int, ensemble: int) -> list[int]:
    """The seeds of an ensemble's members; a single model uses ``seed`` itself."""
    if ensemble == 1:
        return [seed]
    states = np.random.SeedSequence([seed, ensemble]).generate_state(ensemble)
    return [int(s) % (2**31 - 1) for s in states]


@dataclass
class TrainResult:
    """What a run produced: the trained members and how long training took."""

    members: list[RankingModel]
    seeds: list[int]  # init seeds, one per member
    seconds: float
    examples: int
    history: list[dict[str, float]] = field(default_factory=list)
    sharding: dict[str, list[dict]] = field(default_factory=dict)  # table -> shards
    order_seeds: list[int] = field(default_factory=list)

    @property
    def examples_per_second(self) -> float:
        """Training throughput over all members and epochs (resumed epochs excluded)."""
        return self.examples / self.seconds if self.seconds > 0 else float("nan")


class _Progress(keras.callbacks.Callback):
    """Progress lines of a long epoch: rows done, rows per second, ETA and the loss."""

    def __init__(self, log: Log, prefix: str, rows: int, batch_size: int, skip: int,
                 every: float = 15.0) -> None:
        super().__init__()
        self.progress = Progress(prefix, rows, log, every)
        self.batch_size, self.skip, self.rows = batch_size, skip, rows

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        done = min(self.rows, self.skip + (batch + 1) * self.batch_size)
        loss = (logs or {}).get("loss", float("nan"))
        self.progress.update(done - self.skip, f"loss {loss:.4f}")


class _Checkpoints(keras.callbacks.Callback):
    """Checkpoints inside an epoch: every ``steps`` steps, or at the first step after
    ``minutes`` minutes, with the rows of the epoch consumed so far."""

    def __init__(self, manager: tf.train.CheckpointManager, consumed: tf.Variable,
                 optimizer: Any, skip: int, batch_size: int, rows: int, steps: int,
                 minutes: float) -> None:
        super().__init__()
        self.manager, self.consumed, self.optimizer = manager, consumed, optimizer
        self.skip, self.batch_size, self.rows = skip, batch_size, rows
        self.steps, self.seconds = steps, minutes * 60
        self.last = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        done = min(self.rows, self.skip + (batch + 1) * self.batch_size)
        due = ((batch + 1) % self.steps == 0 if self.steps
               else time.perf_counter() - self.last >= self.seconds)
        if due and done < self.rows:
            self.consumed.assign(done)
            self.manager.save(checkpoint_number=int(self.optimizer.iterations.numpy()))
            self.last = time.perf_counter()


def _check_run_identity(folder: Path, identity: dict) -> None:
    marker = folder / "run.json"
    if marker.exists():
        saved = json.loads(marker.read_text())
        if saved != identity:
            changed = sorted(k for k in identity if saved.get(k) != identity[k])
            raise TrainError(f"{folder} holds checkpoints of a different run (differs in "
                             f"{', '.join(changed)}); remove it or pass another "
                             "--checkpoint-dir")
    else:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(marker, identity)


def build_model(config: Config, prepared: Prepared) -> RankingModel | CoDistillation:
    """The model training optimises: one ranking model, or two co-distilled towers."""
    if config.train.codistill > 0:
        return CoDistillation(config.model, prepared.schema, prepared.stats,
                              config.train.codistill)
    return RankingModel(config.model, prepared.schema, prepared.stats)


def example_row(schema: Schema, names: tuple[str, ...]) -> dict[str, tf.Tensor]:
    """One row of placeholder values (0, 0.0, "") for the named inputs."""
    row = {}
    for name in names:
        spec = input_spec(schema.feature(name), 1)
        row[name] = tf.zeros(spec.shape, spec.dtype) if spec.dtype != tf.string else \
            tf.fill(spec.shape, "")
    return row


def build_variables(model: RankingModel | CoDistillation, prepared: Prepared) -> None:
    """Creates the model's variables (every tower's) by calling it on a placeholder row."""
    row = example_row(prepared.schema, prepared.model_inputs)
    model(row)
    if isinstance(model, CoDistillation):
        model.tower_b(row)


def train_member(config: Config, data: TrainInput, seed: int, checkpoint_dir: Path | None,
                 log: Log = say, prefix: str = "", order_seed: int | None = None,
                 warm_from: Any = None, warm_rows: dict | None = None,
                 slot_files: tuple[Path | None, Path | None] = (None, None)
                 ) -> tuple[RankingModel, float, int, list[dict[str, float]]]:
    """Trains one model; returns (model, seconds, examples trained, per-epoch logs).

    ``seed`` initialises the weights, ``order_seed`` (default ``seed``) draws the row order.
    With weight averaging the returned model holds the averaged weights; with
    co-distillation it is tower A. ``warm_from`` (a previous export's member) gives the
    starting weights (both towers when co-distilling), unless a checkpoint resumes the run;
    ``warm_rows`` maps the rows of tables that grew (:func:`warmstart.table_row_maps`).
    ``slot_files`` (restore from, save to): the optimizer state of the tables (and the
    tower's Adam moments) carried from a previous round (with a warm start) and saved for
    the next (:mod:`.slot_carry`).
    Under a distribution strategy the model returned is a local copy of the trained one, and
    the logs end with ``{"shards": ...}``, the layout of its embedding tables.
    """
    order_seed = seed if order_seed is None else order_seed
    tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(seed)
    strategy = make_strategy(config.train.strategy)
    epochs, batch_size = config.train.epochs, config.train.batch_size
    steps, rows = data.steps, data.rows
    prepared = data.prepared
    with strategy.scope() if strategy else contextlib.nullcontext():
        model = build_model(config, prepared)
        optimizer = make_training_optimizer(config, epochs * steps, model)
        # Under parameter servers the chief schedules steps_per_execution steps per call.
        model.compile(optimizer=optimizer,
                      steps_per_execution=10 if is_parameter_server(strategy) else 1)
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    consumed = tf.Variable(0, dtype=tf.int64, trainable=False, name="rows_consumed")
    manager = None
    if checkpoint_dir is not None:
        _check_run_identity(checkpoint_dir, {
            "config": config.to_dict(), "seed": seed, "order_seed": order_seed,
            "data": prepared.checksum})
        checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch,
                                         rows_consumed=consumed)
        manager = tf.train.CheckpointManager(checkpoint, str(checkpoint_dir), max_to_keep=2)
        if manager.latest_checkpoint:
            # Build the model's and optimizer's variables so the restore is immediate.
            build_variables(model, prepared)
            optimizer.build(model.trainable_variables)
            checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
            inside = (f", {int(consumed.numpy()):,} rows into epoch {int(epoch.numpy()) + 1}"
                      if int(consumed.numpy()) else "")
            log(f"{prefix}resuming after epoch {int(epoch.numpy())}{inside} from "
                f"{manager.latest_checkpoint}")
            warm_from = None  # the checkpoint already holds the run's state
    if warm_from is not None:
        build_variables(model, prepared)
        towers = [model.tower_a, model.tower_b] if isinstance(model, CoDistillation) else [model]
        copied = sum(copy_weights(t, warm_from, row_maps=warm_rows) for t in towers)
        log(f"{prefix}warm start: {copied} variables from the previous version")
    if strategy is None:
        # The tables and the optimizer's slots are made now, not in the pass's first step:
        # the pass's time and examples/s are training alone.
        build_variables(model, prepared)
        optimizer.build(model.trainable_variables)
    carry = strategy is None and slot_carry.carries(optimizer)
    if carry and warm_from is not None and slot_files[0] is not None:
        try:
            restored = slot_carry.restore(model, optimizer, slot_files[0], warm_rows)
            log(f"{prefix}warm start: {restored} optimizer slot(s) of the tables and tower "
                f"from {slot_files[0]}")
        except ValueError as error:  # e.g. the config changed the tables' optimizer
            log(f"{prefix}the tables' optimizer slots start afresh: {error}")
    seconds, examples, history = 0.0, 0, []
    # Under parameter servers Keras reports the last scheduled step's metrics, not the
    # epoch's; the loss on a fixed sample of training rows, measured by the chief, is the
    # trustworthy progress signal there.
    sample = (_loss_sample(data.columns(), seed) if is_parameter_server(strategy) else None)
    if sample is not None and int(epoch.numpy()) == 0:
        with strategy.scope():  # the first call builds the variables: on the PS
            history.append({"epoch": 0, "sample_loss": _sample_loss(model, sample)})
    for e in range(int(epoch.numpy()), epochs):
        label = f"{prefix}epoch {e + 1}/{epochs}"
        skip = int(consumed.numpy())
        started = time.perf_counter()
        if is_parameter_server(strategy):
            creator = keras.utils.experimental.DatasetCreator(per_worker_dataset_fn(
                data.columns(), data.order(order_seed, e), batch_size))
            fit = model.fit(creator, epochs=1, steps_per_epoch=steps, verbose=0)
        else:
            callbacks: list[keras.callbacks.Callback] = [
                _Progress(log, label, rows, batch_size, skip)]
            if manager is not None:
                callbacks.append(_Checkpoints(manager, consumed, optimizer, skip, batch_size,
                                              rows, config.train.checkpoint_steps,
                                              config.train.checkpoint_minutes))
            fit = model.fit(data.epoch(order_seed, e, skip), epochs=1, verbose=0,
                            callbacks=callbacks)
        took = time.perf_counter() - started
        seconds += took
        examples += rows - skip
        logs = {k: float(v[-1]) for k, v in fit.history.items()}
        if sample is not None:
            logs["sample_loss"] = _sample_loss(model, sample)
        history.append({"epoch": e + 1, **logs})
        epoch.assign(e + 1)
        consumed.assign(0)
        saved = (f", checkpoint {manager.save(checkpoint_number=int(optimizer.iterations))}"
                 if manager else "")
        shown = ", ".join(f"{k} {v:.4f}" for k, v in logs.items()
                          if k not in ("regularization_loss", "total_loss"))
        log(f"{label}: {shown} ({took:.1f}s, {(rows - skip) / took:,.0f} ex/s{saved})")
    if carry and slot_files[1] is not None:
        slot_carry.save(slot_files[1], slot_carry.table_slots(model, optimizer))
    if averages_weights(optimizer):
        # Read under the strategy's scope: the averages may live on parameter servers.
        with strategy.scope() if strategy else contextlib.nullcontext():
            optimizer.swap_in_average(model.trainable_variables)
        log(f"{prefix}weights replaced by their average "
            f"({config.train.weight_averaging}{_momentum_note(optimizer)})")
    if strategy is not None:
        ranking = model.tower_a if isinstance(model, CoDistillation) else model
        shards = {name: shard_layout(table.embedding.embeddings)
                  for name, table in ranking.encoder.tables.items()}
        largest = max(shards, key=lambda name: sum(s["rows"] for s in shards[name]))
        shown = ", ".join(f"{s['device']} {s['rows']:,} rows" for s in shards[largest])
        log(f"{prefix}{largest} table shards: {shown}")
        history.append({"shards": shards})
        model = _to_local(model, config, prepared)
    if isinstance(model, CoDistillation):
        model = model.tower_a
    return model, seconds, examples, history


def _to_local(model: RankingModel | CoDistillation, config: Config, prepared: Prepared
              ) -> RankingModel | CoDistillation:
    """The trained weights in a model outside any strategy (sharded variables joined), for
    evaluation and export: a checkpoint written from the distributed model is read back
    into a fresh one, which TensorFlow re-partitions on restore."""
    local = build_model(config, prepared)
    build_variables(local, prepared)
    with tempfile.TemporaryDirectory(prefix="steadyrank-unshard-") as tmp:
        path = tf.train.Checkpoint(model=model).write(f"{tmp}/model")
        tf.train.Checkpoint(model=local).read(path).assert_existing_objects_matched()
    return local


def _loss_sample(columns: dict[str, np.ndarray], seed: int, size: int = 20_000
                 ) -> dict[str, np.ndarray]:
    n = len(columns[LABEL])
    rows = np.random.default_rng([seed, 7]).choice(n, min(size, n), replace=False)
    return {k: v[rows] for k, v in columns.items()}


def _sample_loss(model: RankingModel, sample: dict[str, np.ndarray], batch: int = 8192
                 ) -> float:
    """The training loss (the task's mean per-example loss) on a fixed sample of rows."""
    total, n = 0.0, len(sample[LABEL])
    for start in range(0, n, batch):
        part = {k: tf.constant(v[start:start + batch]) for k, v in sample.items()}
        scores = model(part)
        total += float(tf.reduce_sum(model.example_loss(model.labels_of(part, scores),
                                                        scores)))
    return total / n


def train(config: Config, seed: int, prepared: Prepared,
          checkpoint_dir: str | Path | None = None, log: Log = say,
          order_seed: int | None = None, warm_start: str | Path | None = None,
          warm_rows: dict | None = None, slots: SlotCarry | None = None) -> TrainResult:
    """Trains the configured model (``config.train.ensemble`` members): weights initialised
    from ``seed`` (or from the export ``warm_start``), rows ordered from ``order_seed``
    (default: ``seed``). ``prepared``: the data
    (:func:`steadyrank.model.data.splits.prepare_data`). ``slots``: where the tables'
    optimizer slots come from and go to (continuous training)."""
    order_seed = seed if order_seed is None else order_seed
    seeds = member_seeds(seed, config.train.ensemble)
    orders = member_seeds(order_seed, config.train.ensemble)
    members, seconds, examples, history = [], 0.0, 0, []
    sharding: dict[str, list[dict]] = {}
    previous = previous_members(warm_start) if warm_start is not None else None
    if previous is not None and len(previous) != len(seeds):
        raise TrainError(f"cannot warm start from {warm_start}: it has {len(previous)} "
                         f"member(s), this config trains {len(seeds)}")
    shown = f"seed {seed}" + (f", order seed {order_seed}" if order_seed != seed else "")
    check_table_memory(config, prepared.schema, prepared.stats, log)
    data = make_input(prepared, config.train.batch_size, config.train.shuffle, log,
                      model=config.model)
    log(f"training {len(seeds)} model(s) on {data.rows:,} rows "
        f"({config.model.activation}, {shown})")
    for i, (member_seed, member_order) in enumerate(zip(seeds, orders, strict=True)):
        folder = None
        if checkpoint_dir is not None:
            folder = Path(checkpoint_dir) / (f"member-{i}" if len(seeds) > 1 else "model")
        prefix = f"member {i + 1}/{len(seeds)} " if len(seeds) > 1 else ""
        model, took, n, logs = train_member(
            config, data, member_seed, folder, log, prefix, order_seed=member_order,
            warm_from=previous[i] if previous is not None else None, warm_rows=warm_rows,
            slot_files=slots.files(i) if slots is not None else (None, None))
        if len(seeds) > 1:
            release_optimizer(model)  # the next member trains beside this one's tables only
        members.append(model)
        seconds += took
        examples += n
        sharding = sharding or next((h["shards"] for h in logs if "shards" in h), {})
        history += [{"member": i, **h} for h in logs if "shards" not in h]
    return TrainResult(members, seeds, seconds, examples, history, sharding, orders)


def release_optimizer(model: keras.Model) -> None:
    """Lets a trained model's optimizer (and its slots) go: the model no longer refers to
    it, so its memory is freed and no save writes it."""
    if getattr(model, "optimizer", None) is not None:
        model._delete_tracking("optimizer")
        model.optimizer = None


def remove_checkpoints(checkpoint_dir: str | Path) -> None:
    """Deletes a finished run's checkpoints."""
    shutil.rmtree(checkpoint_dir, ignore_errors=True)
