"""Ranking model: layers serialize, the model builds on MovieLens features and learns."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from steadyrank.model import config as cfg
from steadyrank.model.data.interactions import split
from steadyrank.model.data.sources import load_movielens
from steadyrank.model.data.tables import FeatureTables
from steadyrank.model.network.layers import DeepCrossTower, IdEmbedding, MultiHotEmbedding
from steadyrank.model.network.ranking import RankingModel
from steadyrank.ops import SmeLU


@pytest.mark.parametrize("layer", [
    IdEmbedding([3, 5, 7], 4, oov_buckets=2, name="ids"),
    MultiHotEmbedding(5, 3, name="multi"),
    DeepCrossTower(2, (8, 4), "smelu", 0.5, layer_norm=True, name="tower"),
])
def test_layers_round_trip_through_get_config(layer):
    x = {IdEmbedding: tf.constant([3, 7, 99]), MultiHotEmbedding: tf.constant([[1., 0, 1, 0, 0]]),
         DeepCrossTower: tf.ones((2, 6))}[type(layer)]
    layer(x)
    clone = keras.layers.deserialize(keras.layers.serialize(layer))
    assert type(clone) is type(layer) and clone.get_config() == layer.get_config()
    clone(x)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(clone(x).numpy(), layer(x).numpy(), rtol=1e-6)


def test_tower_uses_configured_activation():
    tower = DeepCrossTower(1, (8,), "smelu", 0.25)
    tower(tf.ones((1, 4)))
    smelus = [layer for layer in tower.deep if isinstance(layer, SmeLU)]
    assert len(smelus) == 1 and smelus[0].beta == 0.25
    with pytest.raises(ValueError, match="unknown activation 'tanh'"):
        DeepCrossTower(1, (8,), "tanh")


def test_tower_without_cross_layers_is_the_deep_mlp_alone():
    tower = DeepCrossTower(0, (8,), "relu")
    x = tf.random.stateless_normal((5, 4), seed=(1, 2))
    out = tower(x).numpy()
    assert tower.crosses == [] and out.shape == (5, 1)
    dense, act = tower.deep
    score = tower.score
    # float64 reference: score(relu(x W + b)), with no cross features in the concat
    h = np.maximum(x.numpy().astype(np.float64) @ dense.kernel.numpy() + dense.bias.numpy(), 0)
    want = h @ score.kernel.numpy() + score.bias.numpy()
    assert score.kernel.shape == (8, 1)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)


def test_oov_ids_use_the_oov_bucket():
    emb = IdEmbedding([10, 20], 3)
    out = emb(tf.constant([10, 20, 30, 40])).numpy()
    np.testing.assert_array_equal(out[2], out[3])  # both unknown -> the same OOV row
    assert not np.array_equal(out[0], out[2])


@pytest.mark.parametrize("task, metric", [("rating", "rmse"), ("binary", "auc")])
def test_model_learns_on_movielens(ml100k, task, metric):
    keras.utils.set_random_seed(0)
    data = load_movielens(ml100k)
    train, evaluation = split(data, 0.2, seed=0)
    config = cfg.ModelConfig(task=task, deep_layers=(32, 16), embedding_dim=8)
    model = RankingModel(config, FeatureTables.from_data(data))
    model.compile(optimizer=keras.optimizers.Adam(0.005))

    def dataset(d, shuffle=False):
        ds = tf.data.Dataset.from_tensor_slices(
            {"user_id": d.user_id, "item_id": d.item_id, "rating": d.rating})
        return (ds.shuffle(len(d), seed=0) if shuffle else ds).batch(1024)

    before = model.evaluate(dataset(evaluation), return_dict=True, verbose=0)[metric]
    model.fit(dataset(train, shuffle=True), epochs=2, verbose=0)
    after = model.evaluate(dataset(evaluation), return_dict=True, verbose=0)[metric]
    if task == "rating":
        assert after < 1.0 < before  # far better than the untrained model
    else:
        assert after > 0.7 > before
    scores = model({"user_id": tf.constant([1, 999_999]), "item_id": tf.constant([1, 1])})
    assert scores.shape == (2, 1) and np.isfinite(scores.numpy()).all()  # unknown user ok


def test_config_errors_name_the_key(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[model]\nactivation = "tanh"\n')
    with pytest.raises(cfg.ConfigError, match="model.activation must be one of"):
        cfg.load(path)
    path.write_text('[model]\nsmelu_beta = -1.0\n')
    with pytest.raises(cfg.ConfigError, match="model.smelu_beta"):
        cfg.load(path)
    path.write_text('[train]\nepoch = 3\n')
    with pytest.raises(cfg.ConfigError, match="unknown key.*epoch"):
        cfg.load(path)
    path.write_text('[model\n')
    with pytest.raises(cfg.ConfigError, match="not valid TOML"):
        cfg.load(path)
    with pytest.raises(cfg.ConfigError, match="no such config file"):
        cfg.load(tmp_path / "missing.toml")
    path.write_text('[model]\ndeep_layers = [64, 32]\nlayer_norm = true\n[train]\nepochs = 2\n')
    loaded = cfg.load(path)
    assert loaded.model.deep_layers == (64, 32) and loaded.train.epochs == 2
    assert cfg.from_dict(loaded.to_dict()) == loaded
