"""The learnable GSmeLU Keras layer: starts as SmeLU, learns, keeps alpha + beta > 0, saves and
loads; and a ranking model with activation = "gsmelu" trains, exports and serves its export."""


import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

import steadyrank.ops as sro
from steadyrank.model.artifact import reader
from steadyrank.model.data.splits import prepare_data
from steadyrank.model.training.trainer import train
from steadyrank.model.training.workflow import train_and_export
from tests.conftest import eval_inputs, reloaded_in_fresh_process, run_python, small_config


def test_initialised_to_exactly_smelu():
    x = tf.constant(np.random.default_rng(0).normal(0, 2, (64, 16)), tf.float32)
    for per_unit in (False, True):
        layer = sro.GSmeLU(beta=0.5, per_unit=per_unit)
        np.testing.assert_array_equal(layer(x).numpy(), sro.smelu(x, 0.5).numpy())
        assert layer.trainable_weights[0].shape == ((16,) if per_unit else ())
        assert [w.name.split("/")[-1] for w in layer.trainable_weights] == ["beta:0"]


def test_learn_names_and_tied_alpha():
    layer = sro.GSmeLU(beta=1.0, learn=("alpha", "beta", "slope_left"))
    layer.build((None, 4))
    assert sorted(w.name.split("/")[-1] for w in layer.trainable_weights) == [
        "alpha:0", "beta:0", "slope_left:0"]
    assert not layer.tied_alpha
    tied = sro.GSmeLU(beta=1.0)
    tied.build((None, 4))
    assert tied.parameters()["alpha"] is tied.parameters()["beta"]
    with pytest.raises(ValueError, match="unknown parameter\\(s\\) gamma"):
        sro.GSmeLU(learn=("gamma",))
    with pytest.raises(ValueError, match="alpha \\+ beta must be > 0"):
        sro.GSmeLU(beta=1.0, alpha=-2.0)
    with pytest.raises(ValueError, match="per_unit=True\\) needs a known last axis"):
        sro.GSmeLU(per_unit=True).build((None, None))


def test_config_round_trip():
    layer = sro.GSmeLU(beta=0.25, alpha=0.5, slope_left=0.1, per_unit=True,
                       learn=("beta", "slope_right"), name="act")
    config = layer.get_config()
    assert config["learn"] == ["beta", "slope_right"] and config["alpha"] == 0.5
    clone = sro.GSmeLU.from_config(config)
    x = tf.linspace(-1.0, 1.0, 12)[None, :]
    np.testing.assert_allclose(clone(x).numpy(), layer(x).numpy())
    serialized = keras.layers.serialize(layer)
    assert serialized["registered_name"] == "steadyrank>GSmeLU"
    assert isinstance(keras.layers.deserialize(serialized), sro.GSmeLU)
    assert sro.GSmeLU.from_config(sro.GSmeLU(beta=2.0).get_config()).tied_alpha


def _data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(1024, 8)).astype(np.float32)
    y = (np.abs(x[:, :1]) + 0.3 * x[:, 1:2]).astype(np.float32)
    return x, y


@pytest.mark.parametrize("per_unit", [False, True])
def test_learnable_beta_trains_and_moves(per_unit):
    keras.utils.set_random_seed(0)
    x, y = _data()
    act = sro.GSmeLU(beta=1.0, per_unit=per_unit)
    model = keras.Sequential([keras.layers.Dense(16, input_shape=(8,)), act,
                              keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss="mse")
    before = act.parameters()["beta"].numpy().copy()
    history = model.fit(x, y, epochs=10, batch_size=64, verbose=0)
    after = act.parameters()["beta"].numpy()
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    assert np.abs(after - before).max() > 0.05  # beta moved
    if per_unit:
        assert np.unique(np.round(after, 6)).size > 1  # each unit learned its own


def test_constraint_keeps_the_region_non_empty():
    act = sro.GSmeLU(beta=0.5, learn=("alpha", "beta"), min_width=0.1)
    model = keras.Sequential([keras.layers.Dense(4, input_shape=(2,)), act])
    model.compile(optimizer=keras.optimizers.SGD(50.0), loss="mse")
    x = np.random.default_rng(1).normal(size=(64, 2)).astype(np.float32)
    # A target far below the outputs pulls the widths down hard.
    model.fit(x, np.full((64, 4), -100.0, np.float32), epochs=3, verbose=0)
    params = act.parameters()
    assert float(params["alpha"]) >= 0.05 - 1e-7 and float(params["beta"]) >= 0.05 - 1e-7
    assert np.isfinite(model.predict(x, verbose=0)).all()


@pytest.mark.parametrize("fmt", ["savedmodel", "keras"])
def test_save_and_load_in_fresh_process(tmp_path, fmt):
    keras.utils.set_random_seed(2)
    x, y = _data(2)
    inputs = keras.Input((8,))
    h = sro.GSmeLU(beta=0.7, per_unit=True, learn=("beta", "slope_left"))(
        keras.layers.Dense(16)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(1)(h))
    model.compile(optimizer="adam", loss="mse")
    model.fit(x, y, epochs=2, verbose=0)  # learned values differ from the initial ones
    out = reloaded_in_fresh_process(model, x, tmp_path, fmt, "GSmeLU")
    assert out["keras"] < 1e-6
    assert "GSmeLU" in out["layers"]
    if fmt == "savedmodel":
        assert out["raw"] < 1e-6 and out["uses_op"]


def test_ranking_model_with_gsmelu_trains_exports_and_serves(tiny_data, tmp_path):
    config = small_config(tiny_data, model={"activation": "gsmelu", "gsmelu_per_unit": True,
                                         "gsmelu_learn": ["beta", "slope_left"]})
    splits = prepare_data(config)
    result = train(config, 1, splits, log=lambda m: None)
    acts = [layer for layer in result.members[0].tower.deep if isinstance(layer, sro.GSmeLU)]
    assert len(acts) == len(config.model.deep_layers)
    assert any(np.abs(a.parameters()["beta"].numpy() - 1.0).max() > 1e-4 for a in acts)
    path = train_and_export(config, 1, tmp_path / "models" / "g", tmp_path / "ckpt",
                            prepared=splits, log=lambda m: None)
    rows = eval_inputs(splits, 256)
    users, items = rows["user_id"], rows["item_id"]
    np.save(tmp_path / "pairs.npy", np.stack([users, items]))
    expected = reader.load(path).score_pairs(users, items)
    out = run_python(f"""
        import numpy as np
        from steadyrank.model.artifact import reader
        users, items = np.load({str(tmp_path / 'pairs.npy')!r})
        m = reader.load({str(path)!r})
        np.save({str(tmp_path / 'scores.npy')!r}, m.score_pairs(users, items))
        print(m.manifest["config"]["model"]["activation"])
    """)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split()[-1] == "gsmelu"
    np.testing.assert_allclose(np.load(tmp_path / "scores.npy"), expected, rtol=1e-6)
