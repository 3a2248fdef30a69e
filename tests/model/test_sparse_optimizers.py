"""Row-sparse embedding optimizers and lazy row averaging, against float64 references; the
[train.embeddings] settings, embedding init choices and the tables' memory check; and their
composition with ensembles, co-distillation, warm start and resuming."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from steadyrank.model import config as cfg
from steadyrank.model.data.splits import prepare_data
from steadyrank.model.network.ranking import RankingModel
from steadyrank.model.training import trainer
from steadyrank.model.training.averaging import AveragingAdam, polyak_start
from steadyrank.model.training.footprint import MemoryBudgetError, table_costs
from steadyrank.model.training.sparse_optimizers import (
    CARRIED_SLOTS,
    Momenta,
    PartedOptimizer,
    RowSparseOptimizer,
    table_variables,
)
from steadyrank.model.training.trainer import train
from steadyrank.model.training.workflow import train_and_export
from tests.conftest import eval_inputs, small_config

ROWS, DIM = 12, 3
ADAGRAD = {"optimizer": "adagrad", "learning_rate": 0.05}


@pytest.fixture(scope="module")
def splits(tiny_data):
    return prepare_data(small_config(tiny_data))


def _steps(seed: int, count: int, rows: int = ROWS):
    """Sparse gradients: a few rows per step, with duplicates; rows 10 and 11 never."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        idx = rng.integers(0, rows - 2, size=rng.integers(2, 6))
        out.append((idx.astype(np.int64), rng.normal(size=(len(idx), DIM))))
    return out


def _summed(idx, values):
    rows = np.unique(idx)
    return rows, np.stack([values[idx == r].sum(axis=0) for r in rows])


def _reference(kind, w, steps, lr=0.1, acc0=0.1, b1=0.9, b2=0.999, eps=1e-7, l1=0.0, l2=0.0):
    """Each optimizer's update in float64 numpy, on the summed rows only."""
    w = w.astype(np.float64).copy()
    acc = np.full_like(w, acc0)
    lin, m, v = np.zeros_like(w), np.zeros_like(w), np.zeros_like(w)
    for t, (idx, values) in enumerate(steps):
        rows, g = _summed(idx, values)
        if kind == "sgd":
            w[rows] -= lr * g
        elif kind == "adagrad":
            acc[rows] += g * g
            w[rows] -= lr * g / (np.sqrt(acc[rows]) + eps)
        elif kind == "ftrl":
            new = acc[rows] + g * g
            lin[rows] += g - (np.sqrt(new) - np.sqrt(acc[rows])) / lr * w[rows]
            quad = np.sqrt(new) / lr + 2 * l2
            w[rows] = np.where(np.abs(lin[rows]) > l1,
                               (np.sign(lin[rows]) * l1 - lin[rows]) / quad, 0.0)
            acc[rows] = new
        else:  # lazy_adam
            step = t + 1
            scaled = lr * np.sqrt(1 - b2 ** step) / (1 - b1 ** step)
            m[rows] = b1 * m[rows] + (1 - b1) * g
            v[rows] = b2 * v[rows] + (1 - b2) * g * g
            w[rows] -= scaled * m[rows] / (np.sqrt(v[rows]) + eps)
    return w, {"accumulator": acc, "linear": lin, "m": m, "v": v}


def _run(optimizer, w0, steps):
    var = tf.Variable(w0.astype(np.float32))
    for idx, values in steps:
        grad = tf.IndexedSlices(tf.constant(values, tf.float32), tf.constant(idx),
                                tf.constant([ROWS, DIM], tf.int64))
        optimizer.apply_gradients([(grad, var)])
    return var


@pytest.mark.parametrize("kind, extra", [("sgd", {}), ("adagrad", {}), ("lazy_adam", {}),
                                         ("ftrl", {"l1": 0.01, "l2": 0.1})])
def test_each_optimizer_follows_its_float64_update_on_the_used_rows_only(kind, extra):
    w0 = np.random.default_rng(0).normal(size=(ROWS, DIM))
    steps = _steps(1, 12)
    opt = RowSparseOptimizer(kind, 0.1, **extra)
    var = _run(opt, w0, steps)
    want, slots = _reference(kind, w0, steps, **extra)
    np.testing.assert_allclose(var.numpy(), want, rtol=2e-5, atol=1e-5)
    for name, value in opt.slots(var).items():
        np.testing.assert_allclose(value.numpy(), slots[name], rtol=2e-5, atol=1e-5)
    # Rows no batch named: weights and slots as they started.
    np.testing.assert_array_equal(var.numpy()[10:], w0[10:].astype(np.float32))
    for name, value in opt.slots(var).items():
        start = 0.1 if name == "accumulator" else 0.0
        np.testing.assert_array_equal(value.numpy()[10:], np.full((2, DIM), start, np.float32))
    assert int(opt.iterations.numpy()) == len(steps)


@pytest.mark.parametrize("kind", ["adagrad", "lazy_adam", "ftrl", "sgd"])
def test_a_run_given_the_carried_slots_and_step_count_continues_the_uninterrupted_one(kind):
    """What continuous training's slot carry gives a round: the float64 run of all 20 steps
    equals 12 steps, then a fresh optimizer with those weights, the carried slots
    (CARRIED_SLOTS) and the carried bias-correction step count, then 8 more."""
    w0 = np.random.default_rng(0).normal(size=(ROWS, DIM))
    steps = _steps(2, 20)
    first = RowSparseOptimizer(kind, 0.1)
    var = _run(first, w0, steps[:12])
    second = RowSparseOptimizer(kind, 0.1)
    carried = tf.Variable(var.numpy())
    second.build([carried])
    for name in CARRIED_SLOTS[kind]:
        second.slots(carried)[name].assign(first.slots(var)[name])
    second.set_bias_steps(first.bias_steps())
    assert second.bias_steps() == 12 and int(second.iterations.numpy()) == 0
    for idx, values in steps[12:]:
        grad = tf.IndexedSlices(tf.constant(values, tf.float32), tf.constant(idx),
                                tf.constant([ROWS, DIM], tf.int64))
        second.apply_gradients([(grad, carried)])
    want, _ = _reference(kind, w0, steps)
    np.testing.assert_allclose(carried.numpy(), want, rtol=5e-5, atol=5e-5)
    assert second.bias_steps() == 20


def test_a_dense_gradient_updates_every_row():
    var = tf.Variable(np.ones((4, 2), np.float32))
    opt = RowSparseOptimizer("adagrad", 0.5, initial_accumulator=1.0)
    opt.apply_gradients([(tf.ones((4, 2)), var)])
    np.testing.assert_allclose(var.numpy(), 1 - 0.5 / np.sqrt(2.0), rtol=1e-6)


def test_unknown_optimizer_is_named():
    with pytest.raises(ValueError, match="unknown row-sparse optimizer 'adamw'"):
        RowSparseOptimizer("adamw", 0.1)


@pytest.mark.parametrize("kind, value", [("ema", 0.5), ("ema", 0.95), ("polyak", 0.5)])
def test_momenta_are_the_dense_averagers_and_their_products_close_in_form(kind, value):
    total = 40
    start = polyak_start(total, value) if kind == "polyak" else None
    momenta = Momenta(kind, value, start)
    dense = AveragingAdam(0.1, momentum=value, polyak_from=start)
    mus = np.array([float(momenta.at(tf.constant(k, tf.int64))) for k in range(total)])
    for k in range(total):
        if kind == "ema" or k >= start:  # Polyak's steps before the start are reset by it
            assert mus[k] == pytest.approx(float(dense._momentum(k)), rel=1e-6)
    first = tf.constant(np.arange(0, total + 2), tf.int64)  # a row's stamp + 1
    for last in (-1, 0, 5, start or 7, total - 1):
        got = momenta.product(first, tf.constant(last, tf.int64)).numpy()
        want = [np.prod(mus[a:last + 1]) if a <= last else 1.0 for a in range(0, total + 2)]
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


def test_an_ema_with_its_step_count_takes_its_products_from_a_table():
    total = 50
    closed, table = Momenta("ema", 0.9), Momenta("ema", 0.9, steps=total)
    assert closed.log_sums is None and table.log_sums is not None
    for last in (-1, 0, 3, 30, total - 1, total, total + 7):  # and past the planned steps
        first = tf.constant(np.arange(0, last + 2), tf.int64)  # first <= last + 1
        np.testing.assert_allclose(table.product(first, tf.constant(last, tf.int64)).numpy(),
                                   closed.product(first, tf.constant(last, tf.int64)).numpy(),
                                   rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("averaging, steps", [("ema:0.5", 0), ("ema:0.9", 0), ("ema:0.9", 30),
                                              ("polyak:0.6", 0)])
def test_lazy_row_averages_equal_the_dense_average(averaging, steps):
    """Each row's average caught up lazily equals updating every row's average every step
    (the dense definition), in float64, midway and at the end."""
    kind, value = cfg.parse_averaging(averaging)
    total = 30
    start = polyak_start(total, value) if kind == "polyak" else None
    momenta = Momenta(kind, value, start, steps=steps)
    w0 = np.random.default_rng(2).normal(size=(ROWS, DIM))
    steps = _steps(3, total)
    opt = RowSparseOptimizer("sgd", 0.1, momenta=momenta)
    var = tf.Variable(w0.astype(np.float32))
    w, avg = w0.copy(), w0.copy()
    for t, (idx, values) in enumerate(steps):
        grad = tf.IndexedSlices(tf.constant(values, tf.float32), tf.constant(idx),
                                tf.constant([ROWS, DIM], tf.int64))
        opt.apply_gradients([(grad, var)])
        rows, g = _summed(idx, values)
        w[rows] -= 0.1 * g
        mu = float(momenta.at(tf.constant(t, tf.int64)))
        avg = mu * avg + (1 - mu) * w  # every row, every step
        if t == total // 2:
            np.testing.assert_allclose(opt.averages([var])[0].numpy(), avg, rtol=1e-5,
                                       atol=1e-5)
    np.testing.assert_allclose(var.numpy(), w, rtol=1e-5, atol=1e-5)
    assert np.abs(avg - w).max() > 1e-2  # the average is not the last weights
    opt.finalize_variable_values([var])  # what fit() calls at its end: nothing
    np.testing.assert_allclose(var.numpy(), w, rtol=1e-5, atol=1e-5)
    opt.swap_in_average([var])
    np.testing.assert_allclose(var.numpy(), avg, rtol=1e-5, atol=1e-5)


def test_parted_optimizer_routes_tables_and_clips_all_gradients_together():
    table = tf.Variable(np.zeros((5, 2), np.float32))
    kernel = tf.Variable(np.zeros(2, np.float32))
    opt = PartedOptimizer(keras.optimizers.SGD(1.0), RowSparseOptimizer("sgd", 1.0),
                          lambda v: v is table, clip_norm=1.0)
    grad_table = tf.IndexedSlices(tf.constant([[3.0, 0.0]]), tf.constant([1], tf.int64),
                                  tf.constant([5, 2], tf.int64))
    opt.apply_gradients([(grad_table, table), (tf.constant([0.0, 4.0]), kernel)])
    # The global norm is 5: both gradients scaled by 1/5.
    np.testing.assert_allclose(table.numpy()[1], [-0.6, 0.0], rtol=1e-6)
    np.testing.assert_allclose(kernel.numpy(), [0.0, -0.8], rtol=1e-6)
    assert np.abs(table.numpy()[[0, 2, 3, 4]]).max() == 0
    assert int(opt.iterations.numpy()) == 1 and opt.split([kernel, table]) == ([kernel],
                                                                             [table])


def test_embeddings_section_parses_and_bad_values_name_the_key(tiny_data):
    config = small_config(tiny_data, train={"embeddings": {"optimizer": "ftrl",
                                                           "learning_rate": 0.05, "l1": 0.001}})
    assert config.train.embeddings.optimizer == "ftrl" and config.train.embeddings.l1 == 0.001
    assert config.to_dict()["train"]["embeddings"]["learning_rate"] == 0.05
    assert cfg.techniques(config)["embedding_optimizer"] == {"optimizer": "ftrl",
                                                             "learning_rate": 0.05}
    again = cfg.with_overrides(config, ["train.embeddings.optimizer=sgd"])
    assert again.train.embeddings.optimizer == "sgd" and again.train.embeddings.l1 == 0.001
    assert "embedding_optimizer" not in cfg.techniques(small_config(tiny_data))
    for section, message in [
            ({"embeddings": {"optimizer": "adamw"}},
             "train.embeddings.optimizer must be one of adam, adagrad, lazy_adam, ftrl, sgd, "
             "got 'adamw'"),
            ({"embeddings": {"learning_rate": -1}}, "train.embeddings.learning_rate must be"),
            ({"embeddings": {"beta_2": 1.0}}, "train.embeddings.beta_2 must be in"),
            ({"embeddings": {"momentum": 0.9}}, "train.embeddings: unknown key(s) momentum"),
            ({"embeddings": "adagrad"}, "train.embeddings must be a table, got 'adagrad'"),
            ({"embeddings": {"optimizer": "adagrad"}, "strategy": "mirrored"},
             "must be 'adam' under train.strategy 'mirrored'"),
            ({"table_memory_mb": -1}, "train.table_memory_mb must be >= 0")]:
        with pytest.raises(cfg.ConfigError, match=_escaped(message)):
            small_config(tiny_data, train=section)
    with pytest.raises(cfg.ConfigError, match="override 'train.epochs.x=1'"):
        cfg.with_overrides(config, ["train.epochs.x=1"])


def _escaped(text):
    import re

    return re.escape(text)


@pytest.mark.parametrize("text, want", [("uniform:0.01", ("uniform", 0.01)),
                                        ("normal:0.5", ("normal", 0.5)),
                                        ("zeros", ("zeros", 0.0))])
def test_embedding_init_settings_parse(text, want):
    assert cfg.parse_embedding_init(text) == want


@pytest.mark.parametrize("text", ["uniform", "uniform:0", "normal:-1", "zeros:1", "ones",
                                  "uniform:inf"])
def test_bad_embedding_init_names_the_value(tiny_data, text):
    with pytest.raises(cfg.ConfigError, match=f"model.embedding_init must be .* got '{text}'"):
        small_config(tiny_data, model={"embedding_init": text})


def test_embedding_init_kinds_shape_the_primary_tables(tiny_data, splits):
    def table(init):
        config = small_config(tiny_data, model={"embedding_init": init})
        tf.keras.utils.set_random_seed(0)
        model = RankingModel(config.model, splits.schema, splits.stats)
        model(eval_inputs(splits, 8))
        return (model.encoder.tables["item_id"].embedding.embeddings.numpy(),
                model.encoder.tables["gender"].embedding.embeddings.numpy())

    zeros, side = table("zeros")
    assert not zeros.any() and side.any()  # side tables keep their own init
    uniform, _ = table("uniform:0.01")
    assert 0.009 < np.abs(uniform).max() <= 0.01
    normal, _ = table("normal:0.01")
    assert np.abs(normal).max() > 0.02 and 0.008 < normal.std() < 0.012  # tails past 2 sd
    legacy = small_config(tiny_data, model={"embedding_init_scale": 0.01})
    assert legacy.model.table_init == ("uniform", 0.01)


def test_zero_init_replicas_agree_on_every_row_never_trained(tmp_path):
    """With zero init, rows no training row reaches (out-of-vocabulary rows, hash buckets
    never hit) are zero in every replica; a random init leaves them differing."""
    from steadyrank.model.data import criteo_synth

    data = criteo_synth.generate(criteo_synth.CriteoSpec(rows=3000, shard_rows=3000,
                                                         format="criteo", seed=4),
                                 tmp_path / "criteo", log=lambda _: None)
    raw = {"data": {"format": "criteo", "train": [f"{data}/day-*.tsv"]},
           "model": {"embedding_dim": 4, "deep_layers": [8]},
           "train": {"epochs": 1, "batch_size": 256, "embeddings": ADAGRAD}}

    def untouched_rows(init, seed):
        config = cfg.from_dict({**raw, "model": {**raw["model"], "embedding_init": init}})
        prepared = prepare_data(config)
        model = train(config, seed, prepared, log=lambda m: None).members[0]
        table = model.encoder.tables["C3"]
        return table.embedding.embeddings.numpy()[:table.oov_buckets]

    a, b = untouched_rows("zeros", 1), untouched_rows("zeros", 2)
    assert not a.any() and not b.any()
    assert np.abs(untouched_rows("uniform:0.05", 1) - untouched_rows("uniform:0.05", 2)
                  ).max() > 1e-3


def test_training_with_a_sparse_optimizer_is_deterministic_and_touches_the_tables(
        tiny_data, splits):
    config = small_config(tiny_data, train={"embeddings": ADAGRAD})
    quiet = dict(log=lambda m: None)
    first = train(config, 3, splits, **quiet).members[0]
    again = train(config, 3, splits, **quiet).members[0]
    other = train(config, 4, splits, **quiet).members[0]
    for a, b in zip(first.trainable_variables, again.trainable_variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert isinstance(first.optimizer, PartedOptimizer)
    tables = table_variables(first)
    assert tables and all(first.optimizer.embeddings.slots(t) for t in tables)
    tower = [v for v in first.trainable_variables if all(v is not t for t in tables)]
    assert tower and len(first.optimizer.dense.variables) == 1 + 2 * len(tower)  # Adam's
    assert np.abs(first.encoder.tables["item_id"].embedding.embeddings.numpy()
                  - other.encoder.tables["item_id"].embedding.embeddings.numpy()).max() > 0


def test_ensemble_members_train_with_sparse_optimizers_and_let_their_slots_go(
        tiny_data, splits, tmp_path):
    config = small_config(tiny_data, train={"embeddings": ADAGRAD, "ensemble": 2})
    path = train_and_export(config, 1, tmp_path / "models" / "ens", tmp_path / "ck",
                            log=lambda m: None)
    from steadyrank.model.artifact import reader

    model = reader.load(path)
    assert len(model.module.members) == 2
    assert model.manifest["techniques"]["embedding_optimizer"]["optimizer"] == "adagrad"
    # The export holds the weights only, no optimizer slots.
    names = tf.train.list_variables(str(path / "variables" / "variables"))
    assert names and not any("optimizer" in name for name, _ in names)


def test_codistilled_towers_both_train_their_tables_sparsely(tiny_data, splits,
                                                             monkeypatch):
    from steadyrank.model.training.inputs import make_input

    config = small_config(tiny_data, train={"embeddings": ADAGRAD, "codistill": 0.5})
    seen = {}
    original = trainer.build_model

    def keep(config, prepared):
        seen["model"] = original(config, prepared)
        return seen["model"]

    monkeypatch.setattr(trainer, "build_model", keep)
    data = make_input(splits, config.train.batch_size, config.train.shuffle)
    trainer.train_member(config, data, 1, None, log=lambda m: None)
    both = seen["model"]
    tables = table_variables(both)
    assert len(tables) == 2 * len(table_variables(both.tower_a)) > 0
    optimizer = both.optimizer.embeddings
    for table in tables:  # every table of both towers got Adagrad steps
        assert (optimizer.slots(table)["accumulator"].numpy() > 0.1).any()


def test_warm_start_with_a_sparse_optimizer_starts_from_the_previous_weights(
        tiny_data, splits, tmp_path):
    config = small_config(tiny_data, train={"embeddings": ADAGRAD})
    base = tmp_path / "models" / "ml"
    first = train_and_export(config, 1, base, tmp_path / "ck1", log=lambda m: None)
    lines = []
    warm = train(config, 2, splits, log=lines.append, warm_start=first).members[0]
    cold = train(config, 2, splits, log=lambda m: None).members[0]
    assert any("warm start:" in line for line in lines)
    from steadyrank.model.artifact import reader

    before = reader.load(first).module.members[0]
    previous = [v.numpy() for v in before.variables if "table_item_id" in v.name][0]
    ours = warm.encoder.tables["item_id"].embedding.embeddings.numpy()
    fresh = cold.encoder.tables["item_id"].embedding.embeddings.numpy()
    assert np.abs(ours - previous).mean() < np.abs(fresh - previous).mean()


@pytest.mark.parametrize("optimizer, averaging", [("lazy_adam", "polyak:0.5"),
                                                  ("ftrl", "ema:0.9")])
def test_a_sparse_run_killed_inside_an_epoch_resumes_with_identical_weights_and_slots(
        tiny_data, tmp_path, monkeypatch, optimizer, averaging):
    config = small_config(tiny_data, train={
        "epochs": 2, "batch_size": 500, "checkpoint_steps": 10, "weight_averaging": averaging,
        "embeddings": {"optimizer": optimizer, "learning_rate": 0.02}})
    prepared = prepare_data(config)
    straight = train(config, 3, prepared, log=lambda m: None).members[0]
    original = trainer._Checkpoints.on_train_batch_end
    saves = []

    class Crash(Exception):
        pass

    def crash_after_a_save(self, batch, logs=None):
        before = self.consumed.numpy()
        original(self, batch, logs)
        if self.consumed.numpy() != before:
            saves.append(1)
            if len(saves) == 5:
                raise Crash()

    monkeypatch.setattr(trainer._Checkpoints, "on_train_batch_end", crash_after_a_save)
    with pytest.raises(Crash):
        train(config, 3, prepared, tmp_path / "ck", log=lambda m: None)
    monkeypatch.setattr(trainer._Checkpoints, "on_train_batch_end", original)
    lines = []
    resumed = train(config, 3, prepared, tmp_path / "ck", log=lines.append).members[0]
    assert any("5,000 rows into epoch 2" in line for line in lines)
    for a, b in zip(straight.trainable_variables, resumed.trainable_variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    slots = [straight.optimizer.embeddings.variables, resumed.optimizer.embeddings.variables]
    assert len(slots[0]) == len(slots[1]) > 1
    for a, b in zip(*slots, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_tables_over_the_memory_budget_are_refused_before_training(tiny_data, splits):
    config = small_config(tiny_data, model={"embedding_dim": 256},
                          train={"table_memory_mb": 1})
    lines = []
    with pytest.raises(MemoryBudgetError) as err:
        train(config, 1, splits, log=lines.append)
    text = str(err.value)
    assert "budget 1.00 MiB (train.table_memory_mb = 1)" in text and "peak" in text
    assert not any("epoch" in line for line in lines)  # nothing trained
    assert any(line.startswith("  item_id: 600 rows x 256") for line in lines)
    # Slots per entry: dense Adam 2, Adagrad 1, Adagrad with averaging 2 and a stamp.
    costs = {name: table_costs(small_config(tiny_data, train=section), splits.schema,
                               splits.stats)
             for name, section in {"adam": {}, "adagrad": {"embeddings": ADAGRAD},
                                   "averaged": {"embeddings": ADAGRAD,
                                                "weight_averaging": "ema:0.9"}}.items()}
    item = {name: next(c for c in cost if c.name == "item_id") for name, cost in costs.items()}
    weights = 600 * 8 * 4
    assert item["adam"].weight_bytes == weights and item["adam"].slot_bytes == 2 * weights
    assert item["adagrad"].slot_bytes == weights
    assert item["averaged"].slot_bytes == 2 * weights + 600 * 8


def test_lazy_averages_of_several_tables_updated_together_equal_the_dense_ones():
    """Tables of two widths in one step (their averages are computed together per width)."""
    rng = np.random.default_rng(5)
    shapes = [(12, 3), (7, 3), (5, 2)]
    momenta = Momenta("ema", 0.8, steps=25)
    opt = RowSparseOptimizer("adagrad", 0.1, momenta=momenta)
    start = [rng.normal(size=s) for s in shapes]
    tables = [tf.Variable(w.astype(np.float32)) for w in start]
    twins = [tf.Variable(w.astype(np.float32)) for w in start]  # each stepped alone
    alone = [RowSparseOptimizer("adagrad", 0.1) for _ in shapes]
    averages = [w.astype(np.float64).copy() for w in start]
    for t in range(25):
        pairs = []
        for k, (rows, dim) in enumerate(shapes):
            idx = rng.integers(0, rows, size=3)
            grad = tf.IndexedSlices(tf.constant(rng.normal(size=(3, dim)), tf.float32),
                                    tf.constant(idx, tf.int64), tf.constant([rows, dim]))
            pairs.append((grad, tables[k]))
            alone[k].apply_gradients([(grad, twins[k])])
        opt.apply_gradients(pairs)
        mu = float(momenta.at(tf.constant(t, tf.int64)))
        for k in range(len(shapes)):
            averages[k] = mu * averages[k] + (1 - mu) * twins[k].numpy().astype(np.float64)
    for k in range(len(shapes)):
        np.testing.assert_allclose(tables[k].numpy(), twins[k].numpy(), rtol=1e-6)
    opt.swap_in_average(tables)
    for k in range(len(shapes)):
        np.testing.assert_allclose(tables[k].numpy(), averages[k], rtol=1e-5, atol=1e-5)
