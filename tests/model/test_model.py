"""Ranking model: layers serialize, the schema's features are encoded as declared (against
numpy references), and the model built from a schema learns."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from steadyrank.model import config as cfg
from steadyrank.model.data.splits import prepare_data
from steadyrank.model.data.stats import DataStats, FactTable, Moments, Vocabulary
from steadyrank.model.network.features import FeatureEncoder, _vocabulary_rows
from steadyrank.model.network.layers import DeepCrossTower, EmbeddingTable
from steadyrank.model.network.ranking import RankingModel
from steadyrank.model.schema import Feature, Label, Schema
from steadyrank.model.training.inputs import make_input
from steadyrank.ops import SmeLU


@pytest.mark.parametrize("layer, x", [
    (EmbeddingTable([3, 5, 7], 4, oov_buckets=2, name="ids"), [3, 7, 99]),
    (EmbeddingTable(["a", "b"], 3, "string", name="words"), ["b", "zz"]),
    (EmbeddingTable([], 3, "string", hash_buckets=16, name="hashed"), ["b", "zz"]),
    (DeepCrossTower(2, (8, 4), "smelu", 0.5, layer_norm=True, name="tower"), None),
])
def test_layers_round_trip_through_get_config(layer, x):
    if isinstance(layer, EmbeddingTable):
        call = lambda lay: lay(lay.index(tf.constant(x))).numpy()  # noqa: E731
    else:
        call = lambda lay: lay(tf.ones((2, 6))).numpy()  # noqa: E731
    call(layer)
    clone = keras.layers.deserialize(keras.layers.serialize(layer))
    assert type(clone) is type(layer) and clone.get_config() == layer.get_config()
    call(clone)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(call(clone), call(layer), rtol=1e-6)


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


def test_oov_values_use_the_oov_rows_and_hashing_needs_no_vocabulary():
    table = EmbeddingTable([10, 20], 3)
    rows = table.index(tf.constant([10, 20, 30, 40])).numpy()
    np.testing.assert_array_equal(rows, [1, 2, 0, 0])  # both unknown -> the OOV row
    out = table(rows).numpy()
    np.testing.assert_array_equal(out[2], out[3])
    hashed = EmbeddingTable([], 2, "string", hash_buckets=8)
    got = hashed.index(tf.constant(["a", "b", "a"])).numpy()
    assert got[0] == got[2] and ((0 <= got) & (got < 8)).all() and hashed.rows == 8
    ints = EmbeddingTable([], 2, hash_buckets=5).index(tf.constant([-3, 7, 12])).numpy()
    np.testing.assert_array_equal(ints, np.mod([-3, 7, 12], 5))


@pytest.mark.parametrize("vocabulary, keys", [
    (np.array([30, 10, 20]), np.array([[10, 99], [30, -1]])),
    (np.array(["b", "a"], object), np.array(["a", "zz", "b"], object)),
])
def test_numpy_rows_are_the_lookups_rows(vocabulary, keys):
    table = EmbeddingTable(vocabulary, 2, "string" if vocabulary.dtype == object else "int64")
    want = table.index(tf.constant(keys.tolist())).numpy()
    np.testing.assert_array_equal(_vocabulary_rows(vocabulary, keys, 1), want)


SCHEMA = Schema(Label("y", "binary"), (
    Feature("user", "categorical", "user_id", "string"),
    Feature("item", "categorical", "item_id", "int64"),
    Feature("age", "categorical", "user", "int64", boundaries=(18.0, 30.0)),
    Feature("city", "categorical", "user", "string", truncate=2),
    Feature("tags", "multi_hot", "item", "string", max_len=3),
    Feature("price", "numeric", "item", transform="standardize"),
    Feature("hour", "numeric", "context", transform="log1p")))


def _stats() -> DataStats:
    return DataStats(
        rows=10,
        vocabularies={"user": Vocabulary(np.array(["u1", "u2"], object), np.array([5, 5])),
                      "item": Vocabulary(np.array([7, 8]), np.array([6, 4])),
                      "age": Vocabulary(np.array([0, 1, 2]), np.array([3, 3, 4])),
                      "city": Vocabulary(np.array(["be", "pa"], object), np.array([5, 5])),
                      "tags": Vocabulary(np.array(["x", "y", "z"], object),
                                         np.array([4, 3, 3]))},
        numeric={"price": Moments(count=10, mean=4.0, m2=10 * 2.0 ** 2),
                 "hour": Moments(count=10, mean=3.0, m2=10.0)},
        facts={"user_id": FactTable(np.array(["u1", "u2"], object), {
                   "age": np.array([25, 40]), "city": np.array(["berlin", "paris"], object)}),
               "item_id": FactTable(np.array([7, 8]), {
                   "tags": np.array([["x", "z", ""], ["y", "", ""]], object),
                   "price": np.array([6.0, 2.0], np.float32)})})


def test_the_encoder_looks_facts_up_and_transforms_as_declared():
    encoder = FeatureEncoder(SCHEMA, _stats(), cfg.ModelConfig(embedding_dim=2))
    inputs = {"user": tf.constant(["u2", "nobody"]), "item": tf.constant([7, 8]),
              "hour": tf.constant([9.0, -4.0])}
    out = encoder(inputs).numpy()
    t = encoder.tables
    # float64 references of each part, in schema order.
    emb = lambda name, row: t[name].embedding.embeddings.numpy()[row].astype(np.float64)  # noqa
    want_user = np.stack([emb("user", 2), emb("user", 0)])  # u2 is row 2, unknown row 0
    want_item = np.stack([emb("item", 1), emb("item", 2)])
    want_age = np.stack([emb("age", 3), emb("age", 1)])  # u2: 40 -> bucket 2 (row 3); OOV
    want_city = np.stack([emb("city", 2), emb("city", 1)])  # "pa"; unknown user: row 0 -> OOV
    want_city[1] = emb("city", 0)
    want_tags = np.stack([(emb("tags", 1) + emb("tags", 3)) / 2, emb("tags", 2)])
    price = np.array([(6.0 - 4.0) / 2.0, (2.0 - 4.0) / 2.0])
    hour = np.sign([9.0, -4.0]) * np.log1p(np.abs([9.0, -4.0]))
    want = np.concatenate([want_user, want_item, want_age, want_city, want_tags,
                           price[:, None], hour[:, None]], axis=1)
    want[1, 4:6] = emb("age", 0)  # the unknown user's facts are the unknown rows
    np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-7)
    # Facts given with the request (a new user) give what the stored ones give.
    given = encoder(inputs, {"age": tf.constant([40, 40]),
                             "city": tf.constant(["paris", "paris"])}).numpy()
    np.testing.assert_allclose(given[0], out[0], rtol=1e-6)


def test_a_multi_hot_row_of_pads_embeds_to_zero():
    encoder = FeatureEncoder(SCHEMA, _stats(), cfg.ModelConfig(embedding_dim=2))
    f = SCHEMA.feature("tags")
    rows = encoder.rows(f, tf.constant([["", "", ""], ["x", "x", "nope"]]))
    np.testing.assert_array_equal(rows.numpy(), [[-1, -1, -1], [1, 1, 0]])
    pooled = encoder.embed(f, rows, False).numpy()
    np.testing.assert_array_equal(pooled[0], [0.0, 0.0])


@pytest.mark.parametrize("task, metric", [("rating", "rmse"), ("binary", "auc")])
def test_model_learns_on_movielens(ml100k, task, metric):
    keras.utils.set_random_seed(0)
    config = cfg.from_dict({"data": {"data_dir": str(ml100k.parent)},
                            "model": {"task": task, "deep_layers": [32, 16],
                                      "embedding_dim": 8}})
    prepared = prepare_data(config)
    model = RankingModel(config.model, prepared.schema, prepared.stats)
    model.compile(optimizer=keras.optimizers.Adam(0.005))
    train = make_input(prepared, 1024, "full", log=lambda _: None)
    from steadyrank.model.network.features import input_spec

    spec = {name: input_spec(prepared.schema.feature(name)) for name in prepared.model_inputs}
    evaluation = tf.data.Dataset.from_generator(  # raw values: the model looks them up
        lambda: ({**r.inputs, "sr_label": r.labels} for r in prepared.eval_batches()),
        output_signature={**spec, "sr_label": tf.TensorSpec([None], tf.float32)})
    before = model.evaluate(evaluation, return_dict=True, verbose=0)[metric]
    for epoch in range(2):
        model.fit(train.epoch(0, epoch), epochs=1, verbose=0)
    after = model.evaluate(evaluation, return_dict=True, verbose=0)[metric]
    if task == "rating":
        assert after < 1.0 < before  # far better than the untrained model
    else:
        assert after > 0.7 > before
    scores = model({"user_id": tf.constant([1, 999_999]), "item_id": tf.constant([1, 1])})
    assert scores.shape == (2, 1) and np.isfinite(scores.numpy()).all()  # unknown user ok


@pytest.mark.parametrize("text, message", [
    ('[model]\nactivation = "tanh"\n', "model.activation must be one of"),
    ('[model]\nsmelu_beta = -1.0\n', "model.smelu_beta"),
    ('[train]\nepoch = 3\n', "unknown key.*epoch"),
    ('[model\n', "not valid TOML")])
def test_config_errors_name_the_key(tmp_path, text, message):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(cfg.ConfigError, match=message):
        cfg.load(path)


def test_a_config_loads_and_round_trips(tmp_path):
    with pytest.raises(cfg.ConfigError, match="no such config file"):
        cfg.load(tmp_path / "missing.toml")
    path = tmp_path / "c.toml"
    path.write_text('[model]\ndeep_layers = [64, 32]\nlayer_norm = true\n[train]\nepochs = 2\n')
    loaded = cfg.load(path)
    assert loaded.model.deep_layers == (64, 32) and loaded.train.epochs == 2
    assert cfg.from_dict(loaded.to_dict()) == loaded


def test_rows_looked_up_by_the_pipeline_are_the_models_own():
    import pyarrow as pa

    from steadyrank.model.data import columns
    from steadyrank.model.data.batches import FACT_ROWS, ROWS
    from steadyrank.model.data.readers import Chunk
    from steadyrank.model.network.features import lookups, table_specs

    config = cfg.ModelConfig(embedding_dim=2)
    encoder = FeatureEncoder(SCHEMA, _stats(), config)
    both = lookups(SCHEMA, table_specs(SCHEMA, _stats(), config), _stats(),
                   ("user", "item", "hour"))
    found = both.tables
    assert set(found) == {"user", "item"} == set(both.facts)  # "hour" is numeric
    batch = pa.RecordBatch.from_pydict({"user": ["u2", "nobody", "u1"], "item": [8, 7, 99],
                                        "hour": [1.0, 2.0, 3.0]})
    chunk = Chunk("f", 0, 0, batch)
    raw = {"user": tf.constant(["u2", "nobody", "u1"]), "item": tf.constant([8, 7, 99]),
           "hour": tf.constant([1.0, 2.0, 3.0])}
    rows = {ROWS + name: tf.constant(columns.feature_rows(chunk, SCHEMA.feature(name), vocab))
            for name, vocab in found.items()}
    rows.update({FACT_ROWS + name: tf.constant(columns.feature_rows(
        chunk, SCHEMA.feature(name), ids)) for name, ids in both.facts.items()})
    for name in found:
        np.testing.assert_array_equal(rows[ROWS + name].numpy(),
                                      encoder.rows(SCHEMA.feature(name), raw[name]).numpy())
    np.testing.assert_array_equal(encoder({**rows, "hour": raw["hour"]}).numpy(),
                                  encoder(raw).numpy())
    tags = SCHEMA.feature("tags")
    listed = Chunk("f", 0, 0, pa.RecordBatch.from_pydict(
        {"tags": pa.array([["z", "x"], [], ["nope", "y"]], pa.list_(pa.string()))}))
    vocab = pa.array(encoder.tables["tags"].vocabulary.tolist())
    np.testing.assert_array_equal(
        columns.feature_rows(listed, tags, vocab),
        encoder.rows(tags, tf.constant([["z", "x", ""], ["", "", ""], ["nope", "y", ""]])))
