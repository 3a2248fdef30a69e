"""Row-sparse optimizers of the embedding tables, with lazily averaged rows.

A step of Keras' Adam decays the moments of every row of every table (``m.assign(m * b1)``
over the whole table, then a scatter-add), so its cost grows with the table, whatever the
batch uses. CTR trainers (TF's TPU embeddings, TorchRec/FBGEMM, HugeCTR) train tables with
optimizers that read and write only the rows a batch names, and their slots:

- ``adagrad``: TF's own sparse Adagrad training op (``ResourceSparseApplyAdagradV2``):
  ``acc += g^2; w -= lr g / (sqrt(acc) + eps)``;
- ``ftrl``: TF's sparse FTRL-proximal op (``ResourceSparseApplyFtrl``, lr power -1/2, with
  ``l1``/``l2``), the wide-model classic;
- ``lazy_adam``: Adam whose moments are updated for the used rows only (TF Addons'
  LazyAdam, read not depended on): ``m, v`` of those rows, bias-corrected by the step;
- ``sgd``: ``w -= lr g`` on the used rows.

Keras sums a gradient's duplicate rows before the update, so a row named twice in a batch
gets one update with the summed gradient (as a dense gradient would give it).

Weight averaging (EMA or Polyak, :mod:`averaging`'s momenta) of a table is kept lazily: each
row remembers the step of its last update; a row not used since then held one value all
along, so when it is next used (and at the end of training) its average catches up over the
skipped steps in closed form: ``avg = P avg + (1 - P) w`` with ``P`` the product of the
momenta of those steps. The result equals the dense definition, which updates every row's
average every step, to float rounding.

:class:`PartedOptimizer` routes each variable's gradient: the tables' to a row-sparse
optimizer, the tower's to its own (Adam, with or without averaging).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras as keras

from steadyrank.model.config import SPARSE_OPTIMIZERS, Config, parse_averaging, parse_decay
from steadyrank.model.training.averaging import (
    AveragingAdam,
    learning_rate_schedule,
    make_optimizer,
    polyak_start,
)

# Slots each optimizer keeps per table entry (row x dim); averaging adds one more and a
# per-row step stamp (int64).
SLOTS = {"adam": 2, "adagrad": 1, "lazy_adam": 2, "ftrl": 2, "sgd": 0}
# The slots a continuous-training round carries to the next, row by row (:mod:`.slot_carry`).
CARRIED_SLOTS = {"adagrad": ("accumulator",), "ftrl": ("accumulator", "linear"),
                 "lazy_adam": ("m", "v"), "sgd": ()}
SWAP_ROWS = 1 << 20  # rows per block when the averages are written into a table


class Momenta:
    """The averaging momenta of :class:`AveragingAdam`, with products over step ranges in
    closed form (float64).

    ``("ema", M)``: ``min(M, (1 + k) / (10 + k))`` at step k (TensorFlow's warm-up);
    ``("polyak", _)`` with ``polyak_from`` F: 0 up to step F (the average restarts at the
    weights), then ``n / (n + 1)`` with ``n = k - F``: the uniform mean of the weights after
    steps F, F+1, ...
    """

    def __init__(self, kind: str, momentum: float = 0.0, polyak_from: int | None = None,
                 steps: int = 0) -> None:
        if kind not in ("ema", "polyak"):
            raise ValueError(f"unknown averaging {kind!r}; expected ema or polyak")
        if kind == "polyak" and polyak_from is None:
            raise ValueError("polyak averaging needs its first averaged step")
        self.kind, self.momentum, self.polyak_from = kind, float(momentum), polyak_from
        # The first step whose warm-up momentum reaches M: (1 + k) / (10 + k) >= M.
        self.warm_steps = (max(0, math.ceil((10 * momentum - 1) / (1 - momentum)))
                           if kind == "ema" else 0)
        # With the run's step count, an EMA's products come from one table of cumulative
        # log momenta (a gather, a subtraction and an exp per row, not a 9-term product):
        # log_sums[i] = sum of log(momentum) over steps 0 .. i-1.
        # The table covers the warm-up at least; past its end every step's momentum is M.
        self.log_sums = None
        if kind == "ema" and steps > 0:
            k = np.arange(max(steps, self.warm_steps), dtype=np.float64)
            mu = np.minimum(self.momentum, (1.0 + k) / (10.0 + k))
            self.log_sums = tf.constant(np.concatenate([[0.0], np.cumsum(np.log(mu))]),
                                        tf.float64)

    def at(self, step: tf.Tensor) -> tf.Tensor:
        """Step ``step``'s momentum (float64)."""
        k = tf.cast(step, tf.float64)
        if self.kind == "ema":
            return tf.minimum(tf.constant(self.momentum, tf.float64), (1.0 + k) / (10.0 + k))
        n = k - float(self.polyak_from)
        return tf.where(n > 0, n / (n + 1.0), tf.zeros_like(n))

    def product(self, first: tf.Tensor, last: tf.Tensor) -> tf.Tensor:
        """The product of the momenta of steps ``first`` .. ``last`` (inclusive), for a
        vector of ``first`` and a scalar ``last``; 1 where the range is empty."""
        if self.log_sums is None:
            return self._closed_product(first, last)
        # A row's range is first .. last with first <= last + 1. Steps past the table (a run
        # that takes more steps than it planned) are past the warm-up: each adds log M.
        end = int(self.log_sums.shape[0]) - 1
        a, b = tf.cast(first, tf.int64), tf.cast(last, tf.int64) + 1
        inside = (tf.gather(self.log_sums, tf.minimum(b, end))
                  - tf.gather(self.log_sums, tf.minimum(a, end)))
        beyond = tf.cast(tf.maximum(b - end, 0) - tf.maximum(a - end, 0), tf.float64)
        return tf.exp(inside + beyond * math.log(self.momentum))

    def _closed_product(self, first: tf.Tensor, last: tf.Tensor) -> tf.Tensor:
        """:meth:`product` in closed form."""
        a = tf.cast(first, tf.float64)
        b = tf.cast(last, tf.float64)
        empty = a > b
        if self.kind == "polyak":
            f = float(self.polyak_from)
            inside = tf.where(a > f, (a - f) / tf.maximum(b - f + 1.0, 1.0), 0.0)
            return tf.where(empty, tf.ones_like(a), inside)
        # Warm-up steps k < K: prod (1 + k) / (10 + k) telescopes to
        # prod_{i=1..9} (a + i) / (b' + 1 + i) with b' = min(b, K - 1).
        warm_end = tf.minimum(b, float(self.warm_steps - 1))
        warm = tf.ones_like(a)
        for i in range(1, 10):
            warm *= (a + i) / (warm_end + 1.0 + i)
        warm = tf.where(a > warm_end, tf.ones_like(a), warm)
        flat = tf.maximum(b - tf.maximum(a, float(self.warm_steps)) + 1.0, 0.0)
        constant = tf.exp(flat * math.log(self.momentum)) if self.momentum > 0 else \
            tf.cast(flat == 0, tf.float64)
        return tf.where(empty, tf.ones_like(a), warm * constant)


class RowSparseOptimizer(keras.optimizers.Optimizer):
    """An optimizer of embedding tables that touches only the rows its gradients name.

    ``kind``: adagrad, lazy_adam, ftrl or sgd. ``momenta`` (optional): average every
    table's rows lazily; :meth:`swap_in_average` writes the averages into the tables. A
    dense gradient (a table fed by an op without a sparse gradient) updates every row.
    """

    def __init__(self, kind: str, learning_rate: float | Any,
                 initial_accumulator: float = 0.1, beta_1: float = 0.9,
                 beta_2: float = 0.999, epsilon: float = 1e-7, l1: float = 0.0,
                 l2: float = 0.0, momenta: Momenta | None = None,
                 name: str = "embeddings", **kwargs: Any) -> None:
        # weight_decay None, not the base class default 0: that would multiply every row
        # of every table by (1 - 0) each step.
        super().__init__(name=name, weight_decay=None, jit_compile=False, **kwargs)
        if kind not in SPARSE_OPTIMIZERS:
            raise ValueError(f"unknown row-sparse optimizer {kind!r}; expected one of "
                             f"{', '.join(SPARSE_OPTIMIZERS)}")
        self.kind = kind
        self._learning_rate = self._build_learning_rate(learning_rate)
        self.initial_accumulator = float(initial_accumulator)
        self.beta_1, self.beta_2 = float(beta_1), float(beta_2)
        self.epsilon, self.l1, self.l2 = float(epsilon), float(l1), float(l2)
        self.momenta = momenta
        self._swap_allowed = False

    def build(self, var_list: Sequence[tf.Variable]) -> None:
        """Creates each table's slots (and average and step stamps when averaging)."""
        super().build(var_list)
        if getattr(self, "_built", False):
            return
        self._built = True
        # Steps before this run that Lazy Adam's bias correction counts (moments carried
        # from a previous round); the learning-rate schedule counts this run's alone.
        self._step_offset = tf.Variable(0, dtype=tf.int64, trainable=False,
                                        name="step_offset")
        self._variables.append(self._step_offset)
        self._slots: list[dict[str, tf.Variable]] = []
        for var in var_list:
            slots: dict[str, tf.Variable] = {}
            if self.kind in ("adagrad", "ftrl"):
                slots["accumulator"] = self.add_variable_from_reference(
                    var, "accumulator",
                    initial_value=tf.fill(var.shape, tf.constant(self.initial_accumulator,
                                                                 var.dtype)))
            if self.kind == "ftrl":
                slots["linear"] = self.add_variable_from_reference(var, "linear")
            if self.kind == "lazy_adam":
                slots["m"] = self.add_variable_from_reference(var, "m")
                slots["v"] = self.add_variable_from_reference(var, "v")
            if self.momenta is not None:
                slots["average"] = self.add_variable_from_reference(var, "average",
                                                                    initial_value=var)
                slots["stamp"] = self._stamp_variable(var)
            self._slots.append(slots)

    def _stamp_variable(self, var: tf.Variable) -> tf.Variable:
        """Each row's last averaged step (-1: none yet), beside the table."""
        strategy = tf.distribute.get_strategy()
        with strategy.extended.colocate_vars_with(var):
            stamp = tf.Variable(tf.fill(var.shape[:1], tf.constant(-1, tf.int64)),
                                name=f"stamp/{var._shared_name}", trainable=False)
        self._variables.append(stamp)
        return stamp

    def bias_steps(self) -> int:
        """The step count Lazy Adam's bias correction has reached (carried steps too)."""
        return int(self.iterations.numpy()) + int(self._step_offset.numpy())

    def set_bias_steps(self, steps: int) -> None:
        """Makes the bias correction count on from ``steps`` (a carried run's count)."""
        self._step_offset.assign(steps - int(self.iterations.numpy()))

    def slots(self, var: tf.Variable) -> dict[str, tf.Variable]:
        """The slots of table ``var`` by name."""
        return self._slots[self._index_dict[self._var_key(var)]]

    @staticmethod
    def _rows(gradient: Any, variable: tf.Variable) -> tuple[tf.Tensor, tf.Tensor]:
        """(rows, their gradients): the rows a sparse gradient names, or every row."""
        if isinstance(gradient, tf.IndexedSlices):
            return gradient.indices, gradient.values
        return tf.range(tf.shape(variable, out_type=tf.int64)[0]), gradient

    def update_step(self, gradient: Any, variable: tf.Variable) -> None:
        """One step on the rows the gradient names (every row for a dense gradient); the
        averages, when kept, are updated by :meth:`_distributed_apply_gradients_fn`."""
        rows, grad = self._rows(gradient, variable)
        self._apply(variable, self.slots(variable), rows, grad)

    def _distributed_apply_gradients_fn(self, distribution: Any, grads_and_vars: list,
                                        **kwargs: Any) -> tf.Tensor:
        """Without averaging, Keras' per-variable updates. With it, every table's step and
        then the averages of the rows each used, computed for all tables of one dtype and
        width at once: each row's average catches up over the steps its weights sat still,
        then takes this step's momentum. (Per table the work is a few gathers and scatters;
        the arithmetic, batched, does not grow with the number of tables.)"""
        if self.momenta is None:
            return super()._distributed_apply_gradients_fn(distribution, grads_and_vars,
                                                           **kwargs)
        step = self.iterations
        work = []
        for grad, var in grads_and_vars:
            rows, values = self._rows(grad, var)
            slots = self.slots(var)
            before = (slots["stamp"].sparse_read(rows), slots["average"].sparse_read(rows),
                      var.sparse_read(rows))
            self._apply(var, slots, rows, values)
            work.append((var, slots, rows, before))
        groups: dict[tuple[Any, ...], list] = {}
        for item in work:
            var = item[0]
            groups.setdefault((var.dtype, tuple(var.shape[1:])), []).append(item)
        for (dtype, _), items in groups.items():
            sizes = [tf.shape(rows)[0] for _, _, rows, _ in items]
            stamps, average, old = (tf.concat([before[k] for *_, before in items], axis=0)
                                    for k in range(3))
            fresh = tf.concat([var.sparse_read(rows) for var, _, rows, _ in items], axis=0)
            keep = tf.cast(self.momenta.product(stamps + 1, step - 1), dtype)[:, None]
            mu = tf.cast(self.momenta.at(step), dtype)
            updated = mu * (keep * average + (1.0 - keep) * old) + (1.0 - mu) * fresh
            for (_, slots, rows, _), part in zip(items, tf.split(updated, sizes), strict=True):
                slots["average"].scatter_update(tf.IndexedSlices(part, rows))
                slots["stamp"].scatter_update(tf.IndexedSlices(
                    tf.fill(tf.shape(rows), step), rows))
        return self.iterations.assign_add(1)

    def _apply(self, variable: tf.Variable, slots: dict[str, tf.Variable], rows: tf.Tensor,
               grad: tf.Tensor) -> None:
        lr = tf.cast(self.learning_rate, variable.dtype)
        if self.kind == "sgd":
            variable.scatter_sub(tf.IndexedSlices(lr * grad, rows))
        elif self.kind == "adagrad":
            tf.raw_ops.ResourceSparseApplyAdagradV2(
                var=variable.handle, accum=slots["accumulator"].handle, lr=lr,
                epsilon=tf.constant(self.epsilon, variable.dtype), grad=grad, indices=rows,
                use_locking=False, update_slots=True)
        elif self.kind == "ftrl":
            tf.raw_ops.ResourceSparseApplyFtrl(
                var=variable.handle, accum=slots["accumulator"].handle,
                linear=slots["linear"].handle, grad=grad, indices=rows, lr=lr,
                l1=tf.constant(self.l1, variable.dtype),
                l2=tf.constant(self.l2, variable.dtype),
                lr_power=tf.constant(-0.5, variable.dtype), use_locking=False)
        else:  # lazy_adam
            step = tf.cast(self.iterations + 1 + self._step_offset, variable.dtype)
            b1, b2 = self.beta_1, self.beta_2
            scaled = lr * tf.sqrt(1.0 - tf.pow(b2, step)) / (1.0 - tf.pow(b1, step))
            m = b1 * slots["m"].sparse_read(rows) + (1.0 - b1) * grad
            v = b2 * slots["v"].sparse_read(rows) + (1.0 - b2) * tf.square(grad)
            slots["m"].scatter_update(tf.IndexedSlices(m, rows))
            slots["v"].scatter_update(tf.IndexedSlices(v, rows))
            variable.scatter_sub(tf.IndexedSlices(scaled * m / (tf.sqrt(v) + self.epsilon),
                                                  rows))

    def finalize_variable_values(self, var_list: Sequence[tf.Variable]) -> None:
        """No-op inside ``fit``; the swap happens once, in :meth:`swap_in_average`."""
        if self._swap_allowed:
            super().finalize_variable_values(var_list)

    def caught_up(self, var: tf.Variable, rows: tf.Tensor) -> tf.Tensor:
        """The average of table ``var``'s ``rows`` as of now (caught up to the last step)."""
        slots = self.slots(var)
        keep = self.momenta.product(slots["stamp"].sparse_read(rows) + 1, self.iterations - 1)
        keep = tf.cast(keep, var.dtype)[:, None]
        return keep * slots["average"].sparse_read(rows) + (1.0 - keep) * var.sparse_read(rows)

    def averages(self, var_list: Sequence[tf.Variable]) -> list[tf.Tensor]:
        """Every row's average as of now, per table (whole tables: for small ones)."""
        return [self.caught_up(var, tf.range(var.shape[0], dtype=tf.int64))
                for var in var_list]

    def swap_in_average(self, var_list: Sequence[tf.Variable]) -> None:
        """Overwrites the tables with their caught-up averages (after the last step), a
        block of rows at a time, so a large table needs no whole-table temporaries."""
        if self.momenta is None:
            return
        strategy = tf.distribute.get_strategy()
        for var in var_list:
            total = int(var.shape[0])
            for start in range(0, total, SWAP_ROWS):
                rows = tf.range(start, min(total, start + SWAP_ROWS), dtype=tf.int64)
                strategy.extended.update(
                    var, lambda v, r, a: v.scatter_update(tf.IndexedSlices(a, r)),
                    args=(rows, self.caught_up(var, rows)))

    def get_config(self) -> dict[str, Any]:
        """Optimizer config (Keras' ``get_config`` contract)."""
        return {**super().get_config(), "kind": self.kind,
                "learning_rate": self._serialize_hyperparameter(self._learning_rate),
                "initial_accumulator": self.initial_accumulator, "beta_1": self.beta_1,
                "beta_2": self.beta_2, "epsilon": self.epsilon, "l1": self.l1, "l2": self.l2}


class PartedOptimizer(keras.optimizers.Optimizer):
    """Two optimizers for two parts of a model: ``embeddings`` (a :class:`RowSparseOptimizer`)
    for the variables ``is_table`` picks, ``dense`` for the rest. ``clip_norm`` > 0 clips
    all gradients together to that global norm first. Its step count is ``dense``'s."""

    def __init__(self, dense: keras.optimizers.Optimizer, embeddings: RowSparseOptimizer,
                 is_table: Callable[[tf.Variable], bool], clip_norm: float = 0.0,
                 name: str = "parted", **kwargs: Any) -> None:
        # weight_decay None, not the base class default 0: that would multiply every row
        # of every table by (1 - 0) each step.
        super().__init__(name=name, weight_decay=None, jit_compile=False, **kwargs)
        self.dense, self.embeddings = dense, embeddings
        self._is_table = is_table
        self.clip_norm = float(clip_norm)

    @property
    def iterations(self) -> tf.Variable:
        """Steps taken (the tower optimizer's count)."""
        return self.dense.iterations

    @iterations.setter
    def iterations(self, variable: tf.Variable) -> None:
        self._iterations = variable

    def split(self, var_list: Sequence[tf.Variable]
              ) -> tuple[list[tf.Variable], list[tf.Variable]]:
        """(tower variables, table variables) of ``var_list``, in its order."""
        tables = [v for v in var_list if self._is_table(v)]
        keys = {id(v) for v in tables}
        return [v for v in var_list if id(v) not in keys], tables

    def build(self, var_list: Sequence[tf.Variable]) -> None:
        """Builds both optimizers on their parts of ``var_list``."""
        dense, tables = self.split(var_list)
        self.dense.build(dense)
        self.embeddings.build(tables)

    def apply_gradients(self, grads_and_vars: Any, name: str | None = None,
                        skip_gradients_aggregation: bool = False, **kwargs: Any) -> tf.Tensor:
        """Clips (when asked), then applies the tables' gradients and the tower's; returns
        the step count."""
        pairs = [(g, v) for g, v in grads_and_vars if g is not None]
        if self.clip_norm > 0 and pairs:
            clipped, _ = tf.clip_by_global_norm([g for g, _ in pairs], self.clip_norm)
            pairs = list(zip(clipped, [v for _, v in pairs], strict=True))
        dense, tables = self.split([v for _, v in pairs])
        grads = {id(v): g for g, v in pairs}
        options = dict(skip_gradients_aggregation=skip_gradients_aggregation, **kwargs)
        if tables:
            self.embeddings.apply_gradients([(grads[id(v)], v) for v in tables], **options)
        return self.dense.apply_gradients([(grads[id(v)], v) for v in dense], **options)

    def finalize_variable_values(self, var_list: Sequence[tf.Variable]) -> None:
        """No-op inside ``fit``; averages are swapped in by :meth:`swap_in_average`."""

    def swap_in_average(self, var_list: Sequence[tf.Variable]) -> None:
        """Writes each part's averages into its weights (when the parts average)."""
        dense, tables = self.split(var_list)
        if isinstance(self.dense, AveragingAdam):
            self.dense.swap_in_average(dense)
        self.embeddings.swap_in_average(tables)

    @property
    def averaging(self) -> bool:
        """Whether the weights are averaged."""
        return self.embeddings.momenta is not None

    def get_config(self) -> dict[str, Any]:
        """Optimizer config (Keras' ``get_config`` contract)."""
        return {**super().get_config(), "dense": self.dense.get_config(),
                "embeddings": self.embeddings.get_config(), "clip_norm": self.clip_norm}


def table_variables(model: keras.Model) -> list[tf.Variable]:
    """The embedding tables' trainable variables of ``model`` (every tower's; a sharded
    table's shards)."""
    from steadyrank.model.network.layers import EmbeddingTable

    return [w for layer in model._flatten_layers() if isinstance(layer, EmbeddingTable)
            for w in layer.trainable_weights]


def make_training_optimizer(config: Config, total_steps: int, model: keras.Model
                            ) -> keras.optimizers.Optimizer:
    """The optimizer a run trains ``model`` with: Adam over every weight (with the
    configured averaging, clipping and decay) when ``train.embeddings.optimizer`` is
    ``adam``; else a :class:`PartedOptimizer`: that Adam for the tower and the row-sparse
    optimizer for the tables, averaged alike (lazily) and annealed alike."""
    t = config.train
    averaging, decay = parse_averaging(t.weight_averaging), parse_decay(t.lr_decay)
    if not t.embeddings.sparse:
        return make_optimizer(t.learning_rate, averaging, t.clip_norm, total_steps, decay)
    e = t.embeddings
    momenta = None
    if averaging[0] == "ema":
        momenta = Momenta("ema", averaging[1], steps=total_steps)
    elif averaging[0] == "polyak":
        momenta = Momenta("polyak", polyak_from=polyak_start(total_steps, averaging[1]))
    sparse = RowSparseOptimizer(
        e.optimizer, learning_rate_schedule(e.learning_rate or t.learning_rate, decay,
                                            total_steps),
        initial_accumulator=e.initial_accumulator, beta_1=e.beta_1, beta_2=e.beta_2,
        epsilon=e.epsilon, l1=e.l1, l2=e.l2, momenta=momenta)
    found: dict[str, set[int]] = {}

    def is_table(variable: tf.Variable) -> bool:
        if "ids" not in found:  # the tables exist once the model has been called
            found["ids"] = {id(w) for w in table_variables(model)}
        return id(variable) in found["ids"]

    dense = make_optimizer(t.learning_rate, averaging, 0.0, total_steps, decay)
    return PartedOptimizer(dense, sparse, is_table, t.clip_norm)


def averages_weights(optimizer: keras.optimizers.Optimizer) -> bool:
    """Whether ``optimizer`` keeps weight averages to swap in at the end."""
    return isinstance(optimizer, AveragingAdam) or (
        isinstance(optimizer, PartedOptimizer) and optimizer.averaging)


def tower_optimizer(optimizer: keras.optimizers.Optimizer) -> keras.optimizers.Optimizer:
    """The optimizer of the tower (the whole model's when the tables have no own one)."""
    return optimizer.dense if isinstance(optimizer, PartedOptimizer) else optimizer
