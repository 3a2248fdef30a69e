"""SmeLU in Keras: the layer, the "smelu" activation string, training, save and load."""


import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

import steadyrank.ops as sro
import steadyrank.ops.keras  # noqa: F401  (registers the layers and "smelu")
from tests.conftest import reloaded_in_fresh_process, run_python


def test_activation_string_resolves_to_smelu():
    act = keras.activations.get("smelu")
    x = tf.constant([-2.0, 0.0, 0.5, 3.0])
    np.testing.assert_allclose(act(x).numpy(), sro.smelu(x, 1.0).numpy())
    dense = keras.layers.Dense(3, activation="smelu")
    assert dense.activation is sro.smelu_activation


def test_layer_config_round_trip():
    layer = sro.SmeLU(beta=0.25, name="act")
    config = layer.get_config()
    assert config["beta"] == 0.25 and config["name"] == "act"
    clone = sro.SmeLU.from_config(config)
    x = tf.linspace(-1.0, 1.0, 11)
    np.testing.assert_allclose(clone(x).numpy(), sro.smelu(x, 0.25).numpy())
    serialized = keras.layers.serialize(layer)
    assert serialized["registered_name"] == "steadyrank>SmeLU"
    assert isinstance(keras.layers.deserialize(serialized), sro.SmeLU)


def _regression_data(seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(512, 8)).astype(np.float32)
    y = (np.sin(x[:, :1]) + 0.5 * x[:, 1:2] ** 2).astype(np.float32)
    return x, y


def test_keras_model_fit_reduces_loss():
    keras.utils.set_random_seed(0)
    x, y = _regression_data()
    model = keras.Sequential([
        keras.layers.Dense(32, activation="smelu", input_shape=(8,)),
        keras.layers.Dense(32), sro.SmeLU(beta=0.5), keras.layers.Dense(1),
    ])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    history = model.fit(x, y, epochs=15, batch_size=64, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.5 * losses[0]


def test_keras_model_fit_under_jit_compile():
    keras.utils.set_random_seed(1)
    x, y = _regression_data(1)
    model = keras.Sequential([keras.layers.Dense(16, activation="smelu", input_shape=(8,)),
                              keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse", jit_compile=True)
    history = model.fit(x, y, epochs=3, batch_size=64, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


@pytest.mark.parametrize("fmt", ["savedmodel", "keras"])
def test_save_and_load_in_fresh_process(tmp_path, fmt):
    keras.utils.set_random_seed(2)
    x, _ = _regression_data(2)
    inputs = keras.Input((8,))
    h = keras.layers.Dense(16, activation="smelu")(inputs)
    h = sro.SmeLU(beta=0.3)(keras.layers.Dense(16)(h))
    model = keras.Model(inputs, keras.layers.Dense(1)(h))
    out = reloaded_in_fresh_process(model, x, tmp_path, fmt, "SmeLU")
    assert out["keras"] < 1e-6
    assert "SmeLU" in out["layers"]
    if fmt == "savedmodel":
        assert out["raw"] < 1e-6 and out["uses_op"]


def test_savedmodel_needs_the_op_library(tmp_path):
    """Without importing steadyrank.ops, a SavedModel using SmeLU cannot load: the op is real."""
    module = tf.Module()
    module.f = tf.function(lambda x: sro.smelu(x), input_signature=[tf.TensorSpec([None])])
    tf.saved_model.save(module, str(tmp_path / "m"))
    result = run_python(f"""
        import tensorflow as tf
        tf.saved_model.load({str(tmp_path / 'm')!r})
    """)
    assert result.returncode != 0 and "SmeLU" in result.stderr
