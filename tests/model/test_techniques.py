"""Reproducibility techniques: shuffle modes, init/order seeds, weight averaging,
co-distillation, vocabulary thresholds and embedding options."""

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from steadyrank.model.artifact import reader
from steadyrank.model.config import ConfigError, parse_averaging, parse_decay, techniques
from steadyrank.model.data.order import epoch_order
from steadyrank.model.data.splits import prepare_data
from steadyrank.model.network.codistill import CoDistillation
from steadyrank.model.network.ranking import RankingModel
from steadyrank.model.training.averaging import (
    AveragingAdam,
    Schedule,
    learning_rate_schedule,
    make_optimizer,
    polyak_start,
)
from steadyrank.model.training.inputs import make_input
from steadyrank.model.training.trainer import _momentum_note, train, train_member
from steadyrank.model.training.workflow import train_and_export
from tests.conftest import eval_inputs, small_config, train_batch


@pytest.fixture(scope="module")
def splits(tiny_data):
    return prepare_data(small_config(tiny_data))


def _predict(model, splits, n=2000):
    return model({k: tf.constant(v) for k, v in eval_inputs(splits, n).items()}
                 ).numpy().ravel()


def test_epoch_orders():
    ts = np.random.default_rng(0).permutation(5000) * 10  # distinct, unordered timestamps
    by_time = np.argsort(ts)
    np.testing.assert_array_equal(epoch_order(ts, "time", 1, 0), by_time)
    np.testing.assert_array_equal(epoch_order(ts, "time", 2, 3), by_time)
    full = epoch_order(ts, "full", 1, 0)
    assert sorted(full) == list(range(5000))
    np.testing.assert_array_equal(full, epoch_order(ts, "full", 1, 0))
    assert not np.array_equal(full, epoch_order(ts, "full", 1, 1))
    window = epoch_order(ts, "window:100", 1, 0)
    assert sorted(window) == list(range(5000))
    rank = np.empty(5000, int)
    rank[by_time] = np.arange(5000)
    moved = np.abs(rank[window] - np.arange(5000))
    assert moved.max() < 100 and moved.mean() > 10  # moderate: bounded, but shuffled
    assert not np.array_equal(window, epoch_order(ts, "window:100", 2, 0))
    with pytest.raises(ValueError, match="bad shuffle 'window:0'"):
        epoch_order(ts, "window:0", 1, 0)


def test_init_and_order_seeds_act_separately(tiny_data, splits):
    config = small_config(tiny_data)
    quiet = dict(log=lambda m: None)
    base = _predict(train(config, 1, splits, order_seed=1, **quiet).members[0], splits)
    same = _predict(train(config, 1, splits, order_seed=1, **quiet).members[0], splits)
    other_order = _predict(train(config, 1, splits, order_seed=2, **quiet).members[0], splits)
    other_init = _predict(train(config, 2, splits, order_seed=1, **quiet).members[0], splits)
    np.testing.assert_array_equal(base, same)
    assert np.abs(base - other_order).mean() > 1e-4
    assert np.abs(base - other_init).mean() > 1e-4


@pytest.mark.parametrize("averaging", ["ema:0.99", "polyak:0.5"])
def test_averaging_exports_the_averaged_weights(tiny_data, splits, tmp_path, monkeypatch,
                                                averaging):
    config = small_config(tiny_data, train={"weight_averaging": averaging, "epochs": 2})
    seen = {}
    swap = AveragingAdam.swap_in_average

    def record(self, var_list):
        seen["raw"] = [v.numpy().copy() for v in var_list]
        seen["avg"] = [a.numpy().copy() for a in self.averages(var_list)]
        swap(self, var_list)

    monkeypatch.setattr(AveragingAdam, "swap_in_average", record)
    path = train_and_export(config, 1, tmp_path / "ema", tmp_path / "ckpt", prepared=splits,
                            log=lambda m: None)
    loaded = reader.load(path)
    exported = {v.name: v.numpy() for v in loaded.module.members[0].trainable_variables}
    assert len(exported) == len(seen["avg"])
    # Every exported weight is its moving average, not the last step's value.
    averaged = sorted(a.tobytes() for a in seen["avg"])
    assert sorted(v.tobytes() for v in exported.values()) == averaged
    assert any(not np.array_equal(r, a) for r, a in zip(seen["raw"], seen["avg"], strict=True))
    assert loaded.manifest["techniques"]["weight_averaging"] == averaging


def test_warmed_up_momentum_forgets_the_init():
    var = tf.Variable([0.0])
    opt = AveragingAdam(0.1, momentum=0.999)
    for _ in range(200):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum((var - 5.0) ** 2)
        opt.apply_gradients([(tape.gradient(loss, var), var)])
    average = float(opt.averages([var])[0].numpy()[0])
    # The warm-up (1 + t) / (10 + t) kept the momentum at 200/209 on the last step.
    assert opt.last_momentum() == pytest.approx(200 / 209)
    assert _momentum_note(opt) == ("; momentum warmed up to only 0.9569 by the last of "
                                         "200 steps, under the target 0.999")
    assert AveragingAdam(0.1, momentum=0.5).last_momentum() is None  # no step yet
    reached = AveragingAdam(0.1, momentum=0.9)
    reached.iterations.assign(200)
    assert reached.last_momentum() == pytest.approx(0.9) and _momentum_note(reached) == ""
    # Plain EMA at 0.999 would still hold 0.999**200 = 82% of the initial 0.
    assert average > 3.0 and float(var.numpy()[0]) == pytest.approx(5.0, abs=0.2)
    opt.finalize_variable_values([var])  # what fit() calls: no swap
    assert float(var.numpy()[0]) != average
    opt.swap_in_average([var])
    assert float(var.numpy()[0]) == average


def test_polyak_average_is_the_float64_mean_of_the_last_steps_weights():
    rng = np.random.default_rng(3)
    var = tf.Variable(rng.normal(size=4).astype(np.float32))
    total = 40
    opt = make_optimizer(0.05, parse_averaging("polyak:0.25"), total_steps=total)
    assert polyak_start(total, 0.25) == 30
    after = []
    for _ in range(total):
        with tf.GradientTape() as tape:
            # A noisy objective, so the iterates keep moving and the mean is not the last.
            loss = tf.reduce_sum((var - rng.normal(size=4).astype(np.float32)) ** 2)
        opt.apply_gradients([(tape.gradient(loss, var), var)])
        after.append(var.numpy().astype(np.float64))
    expected = np.mean(after[30:], axis=0)  # the weights after steps 30..39
    opt.swap_in_average([var])
    np.testing.assert_allclose(var.numpy(), expected, rtol=1e-5, atol=1e-6)
    assert np.abs(expected - after[-1]).max() > 1e-3
    assert np.abs(expected - np.mean(after[29:], axis=0)).max() > 1e-4


@pytest.mark.parametrize("text", ["polyak:0", "polyak:1.5", "polyak:", "swa:0.5", "ema:1"])
def test_bad_averaging_names_the_value(text):
    with pytest.raises(ValueError, match=text.replace(".", r"\.")):
        parse_averaging(text)


def test_polyak_needs_the_step_count():
    with pytest.raises(ValueError, match="total step count"):
        make_optimizer(0.01, ("polyak", 0.5))


@pytest.mark.parametrize("kind, end", [("linear", 0.0), ("linear", 0.2), ("cosine", 0.0),
                                       ("cosine", 0.1)])
def test_decay_follows_its_float64_formula(kind, end):
    lr, total = 0.004, 1000
    schedule = learning_rate_schedule(lr, (kind, end), total)
    for step in (0, 1, 250, 500, 999, 1000, 1500):
        t = min(step, total) / total
        if kind == "linear":
            want = lr * (1 - t) + lr * end * t
        else:
            want = lr * ((1 - end) * 0.5 * (1 + np.cos(np.pi * t)) + end)
        assert float(schedule(step)) == pytest.approx(want, rel=1e-5, abs=1e-9), step
    assert learning_rate_schedule(lr, ("none", 1.0), total) == lr


@pytest.mark.parametrize("text, want", [("none", ("none", 1.0)), ("linear", ("linear", 0.0)),
                                        ("cosine:0.1", ("cosine", 0.1)),
                                        ("linear:0", ("linear", 0.0))])
def test_decay_settings_parse(text, want):
    assert parse_decay(text) == want


@pytest.mark.parametrize("text", ["exp", "linear:1", "cosine:-0.1", "linear:x", "cosine:",
                                  "none:0.5"])
def test_bad_decay_names_the_value(text):
    with pytest.raises(ValueError, match=f"bad learning-rate decay '{text}'"):
        parse_decay(text)


def test_bad_decay_in_a_config_names_the_key(tiny_data):
    with pytest.raises(ConfigError, match="train.lr_decay .* got 'step'"):
        small_config(tiny_data, train={"lr_decay": "step"})


def test_decay_is_recorded_as_a_technique(tiny_data):
    assert "lr_decay" not in techniques(small_config(tiny_data))
    config = small_config(tiny_data, train={"lr_decay": "cosine:0.1"})
    assert techniques(config)["lr_decay"] == "cosine:0.1"


def test_decay_needs_the_step_count():
    with pytest.raises(ValueError, match="total step count"):
        make_optimizer(0.01, decay=("linear", 0.0))


@pytest.mark.parametrize("averaging", ["none", "ema:0.99"])
def test_training_anneals_the_learning_rate_to_its_end(tiny_data, splits, averaging):
    config = small_config(tiny_data, train={"lr_decay": "linear:0.25", "epochs": 2,
                                         "weight_averaging": averaging})
    data = make_input(splits, config.train.batch_size, config.train.shuffle)
    model, *_ = train_member(config, data, 1, None, log=lambda m: None)
    steps = 2 * -(-splits.train.rows // config.train.batch_size)
    optimizer = model.optimizer
    assert int(optimizer.iterations.numpy()) == steps
    # The optimizer's schedule spans exactly the run's steps: it reaches 0.25x the
    # configured rate at the last step count, and is halfway down at half of them.
    schedule = optimizer._learning_rate
    assert isinstance(schedule, Schedule)
    lr = config.train.learning_rate
    assert float(schedule(optimizer.iterations)) == pytest.approx(0.25 * lr, rel=1e-5)
    assert float(schedule(steps - 2)) > 0.25 * lr
    assert float(schedule(steps // 2)) == pytest.approx(0.625 * lr, rel=2e-2)


def test_codistillation_exports_one_tower_with_a_plain_models_signatures(tiny_data, splits,
                                                                           tmp_path):
    plain = train_and_export(small_config(tiny_data), 1, tmp_path / "plain", tmp_path / "c1",
                             prepared=splits, log=lambda m: None)
    config = small_config(tiny_data, train={"codistill": 0.5})
    data = make_input(splits, config.train.batch_size, config.train.shuffle)
    model, *_ = train_member(config, data, 1, None, log=lambda m: None)
    assert isinstance(model, RankingModel) and model.name == "tower_a"
    path = train_and_export(config, 1, tmp_path / "cd", tmp_path / "c2", prepared=splits,
                            log=lambda m: None)
    a, b = reader.load(plain), reader.load(path)
    assert a.manifest["signatures"] == b.manifest["signatures"]
    assert a.manifest["parameters"] == b.manifest["parameters"]  # one tower: 1x serving
    for name in a.manifest["signatures"]:
        sig_a, sig_b = a.module.signatures[name], b.module.signatures[name]
        assert sig_a.structured_input_signature == sig_b.structured_input_signature, name
        assert sig_a.structured_outputs.keys() == sig_b.structured_outputs.keys(), name
    rows = eval_inputs(splits, 500)
    assert np.abs(a.score(rows) - b.score(rows)).mean() > 1e-4


def test_codistillation_loss_pulls_the_towers_together(tiny_data, splits):
    config = small_config(tiny_data)
    model = CoDistillation(config.model, splits.schema, splits.stats, weight=1.0)
    batch = train_batch(splits)
    with tf.GradientTape() as tape:
        loss = model.compute_loss(batch, training=True)
    labels_only = (model.tower_a.compute_loss(batch) + model.tower_b.compute_loss(batch))
    a, b = model.tower_a(batch), model.tower_b(batch)
    expected = labels_only + float(tf.reduce_mean(2 * tf.square(a - b)))
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    grads = tape.gradient(loss, model.trainable_variables)
    assert all(g is not None for g in grads)
    with pytest.raises(ValueError, match="weight must be > 0"):
        CoDistillation(config.model, splits.schema, splits.stats, weight=0.0)


def test_vocabulary_threshold_maps_rare_ids_to_oov(tiny_data, splits):
    vocab = splits.stats.vocabularies["item_id"]
    kept = vocab.kept(5)
    assert set(kept) == set(vocab.values[vocab.counts >= 5])
    assert list(vocab.counts) == sorted(vocab.counts, reverse=True)  # most frequent first
    rare = vocab.values[(vocab.counts > 0) & (vocab.counts < 5)][:3]
    common = vocab.values[vocab.counts >= 50][:2]
    model = RankingModel(small_config(tiny_data, model={"min_id_count": 5}).model,
                         splits.schema, splits.stats)
    table = model.encoder.tables["item_id"]
    assert set(table.index(tf.constant(rare)).numpy()) == {0}  # the OOV row
    assert 0 not in set(table.index(tf.constant(common)).numpy())
    # Rare ids share one embedding row.
    rows = table(table.index(tf.constant(rare))).numpy()
    np.testing.assert_array_equal(rows[0], rows[1])
    assert table.embedding.input_dim == len(kept) + 1
    everything = RankingModel(small_config(tiny_data).model, splits.schema, splits.stats)
    assert everything.encoder.tables["item_id"].embedding.input_dim == len(vocab.values) + 1


def test_embedding_init_scale_and_l2(tiny_data, splits):
    config = small_config(tiny_data, model={"embedding_init_scale": 0.001, "embedding_l2": 0.1})
    tf.keras.utils.set_random_seed(0)
    model = RankingModel(config.model, splits.schema, splits.stats)
    batch = train_batch(splits, 64)
    model(batch)
    table = model.encoder.tables["item_id"].embedding.embeddings.numpy()
    assert np.abs(table).max() <= 0.001
    side = model.encoder.tables["gender"].embedding.embeddings.numpy()
    assert np.abs(side).max() > 0.001  # the side features keep their own init
    model(batch, training=False)  # Keras keeps the losses of the latest call
    assert not model.losses  # no penalty outside training
    model(batch, training=True)
    assert len(model.losses) == 2 and all(float(x) > 0 for x in model.losses)


def test_the_served_name_comes_from_the_config_and_is_not_part_of_what_trained(tmp_path):
    from steadyrank.model import config as cfg

    named = cfg.from_dict({"serving": {"name": "shop"}})
    assert named.model_name("configs/other.toml") == "shop"
    assert cfg.from_dict({}).model_name("configs/clicks.toml") == "clicks"
    assert cfg.from_dict({}).model_name() == "ml"
    assert cfg.same_config(named.to_dict(), cfg.from_dict({}))  # a rename retrains nothing
    assert "serving" not in cfg.from_dict({}).to_dict()  # old records' keys are unchanged
    assert cfg.with_overrides(cfg.from_dict({}), ["serving.name=clicks"]).serving.name == \
        "clicks"
    for bad in ("shop-b", "-x", "a b", "x/y"):
        with pytest.raises(cfg.ConfigError, match=f"serving.name must be .*got '{bad}'"):
            cfg.from_dict({"serving": {"name": bad}})
    shipped = cfg.load(Path(__file__).resolve().parents[2] / "configs" / "smelu.toml")
    assert shipped.model_name("configs/smelu.toml") == "ml"  # old deployments keep ml
