"""The declared schema: its syntax, its checks, and the presets the formats imply."""

import numpy as np
import pyarrow as pa
import pytest

from steadyrank.model import config as cfg
from steadyrank.model.artifact import layout
from steadyrank.model.data import columns, presets
from steadyrank.model.data.batches import LABEL, Rows, rebatch, window_shuffled
from steadyrank.model.data.columns import bucketize, truncated
from steadyrank.model.data.order import epoch_order
from steadyrank.model.data.readers import Chunk
from steadyrank.model.data.stats import Moments, ValueCounter
from steadyrank.model.schema import (
    RESERVED_NAMES,
    Feature,
    Label,
    SchemaError,
    check_feature,
    parse_feature,
    parse_schema,
)

LABEL_TABLE = {"column": "clicked", "task": "binary"}


def test_the_issue_syntax_parses_with_its_defaults():
    schema = parse_schema(LABEL_TABLE, [
        {"name": "shopper", "kind": "categorical", "role": "user_id", "dtype": "int64"},
        {"name": "brand", "kind": "categorical", "role": "item", "dtype": "string",
         "min_count": 3},
        {"name": "sku", "kind": "categorical", "role": "item_id"},
        {"name": "price", "kind": "numeric", "role": "item", "transform": "log1p",
         "fill": 0.0},
        {"name": "tags", "kind": "multi_hot", "role": "item", "dtype": "string",
         "separator": "|", "max_len": 8}])
    assert schema.ranks and schema.user_id.name == "shopper" and schema.item_id.name == "sku"
    assert schema.feature("sku").dtype == "int64" and schema.feature("price").dtype == "float"
    assert [f.name for f in schema.with_role("item")] == ["brand", "price", "tags"]
    assert parse_schema(*schema.to_dict().values()) == schema  # round trip


@pytest.mark.parametrize("raw, message", [
    ({"name": "a", "kind": "numerical"}, "kind must be one of categorical, numeric"),
    ({"name": "a", "kind": "numeric", "role": "session"}, "role must be one of"),
    ({"name": "a", "kind": "numeric", "dtype": "int64"}, "dtype must be float"),
    ({"name": "a", "kind": "categorical", "dtype": "float"}, "dtype must be int64 or string"),
    ({"name": "a", "kind": "categorical", "colour": 1}, r"unknown key\(s\) colour"),
    ({"kind": "numeric"}, "missing key 'name'"),
    ({"name": "a b", "kind": "numeric"}, "name must be letters"),
    ({"name": "item_ids", "kind": "numeric"}, "is reserved"),
    ({"name": "a", "kind": "numeric", "transform": "log"}, "transform must be one of"),
    ({"name": "a", "kind": "categorical", "transform": "log1p"}, "numeric features only"),
    ({"name": "a", "kind": "numeric", "min_count": 2}, "has no embedding"),
    ({"name": "a", "kind": "categorical", "hash_buckets": 8, "min_count": 2},
     "hash_buckets replaces the vocabulary"),
    ({"name": "a", "kind": "categorical", "min_count": 0}, "min_count must be >= 1"),
    ({"name": "a", "kind": "categorical", "max_size": "big"}, "must be a whole number"),
    ({"name": "a", "kind": "categorical", "boundaries": [3, 1]}, "strictly ascending"),
    ({"name": "a", "kind": "categorical", "dtype": "string", "boundaries": [1]},
     "boundaries bucket a number"),
    ({"name": "a", "kind": "categorical", "truncate": 2}, "string categorical"),
    ({"name": "a", "kind": "numeric", "fill": "zero"}, "fill must be a float value"),
    ({"name": "a", "kind": "categorical", "role": "user_id", "hash_buckets": 8},
     r"an id \(user_id\) takes a vocabulary"),
    ({"name": "a", "kind": "multi_hot", "role": "item_id"}, "must be categorical"),
])
def test_a_bad_feature_is_named_with_its_key(raw, message):
    with pytest.raises(SchemaError, match=message):
        parse_feature(raw, 0)


@pytest.mark.parametrize("features, message", [
    ([], "declares no features"),
    ([{"name": "a", "kind": "numeric"}, {"name": "a", "kind": "numeric"}],
     "a declared more than once"),
    ([{"name": "clicked", "kind": "numeric"}], "'clicked' is also a feature"),
    ([{"name": "u", "kind": "categorical", "role": "user_id"},
      {"name": "v", "kind": "categorical", "role": "user_id"}],
     "2 features have role 'user_id'"),
    ([{"name": "g", "kind": "categorical", "role": "user"}],
     "role 'user' .* no feature has role 'user_id'"),
    ([{"name": "a", "kind": "categorical", "shared": "t"},
      {"name": "b", "kind": "categorical", "dtype": "string", "shared": "t"}],
     "share table 't' but differ"),
])
def test_the_schema_as_a_whole_is_checked(features, message):
    with pytest.raises(SchemaError, match=message):
        parse_schema(LABEL_TABLE, features)


def test_label_mistakes_are_named():
    feature = [{"name": "a", "kind": "numeric"}]
    with pytest.raises(SchemaError, match="label.task must be one of binary, rating"):
        parse_schema({"column": "y", "task": "ranking"}, feature)
    with pytest.raises(SchemaError, match="label.column must name"):
        parse_schema({"task": "binary"}, feature)
    with pytest.raises(SchemaError, match="label: unknown key"):
        parse_schema({"column": "y", "kind": "binary"}, feature)


def test_the_config_carries_the_schema_and_its_task():
    raw = {"data": {"format": "parquet", "train": "clicks/*.parquet"}, "label": LABEL_TABLE,
           "features": [{"name": "a", "kind": "numeric"}]}
    config = cfg.from_dict(raw)
    assert config.task == "binary" and config.data.train == ("clicks/*.parquet",)
    assert cfg.from_dict(config.to_dict()) == config
    with pytest.raises(cfg.ConfigError, match="needs both \\[label\\] and \\[\\[features\\]\\]"):
        cfg.from_dict({k: v for k, v in raw.items() if k != "features"})
    with pytest.raises(cfg.ConfigError, match="model.task 'rating' contradicts label.task"):
        cfg.from_dict({**raw, "model": {"task": "rating"}})
    with pytest.raises(cfg.ConfigError, match="must list the files or globs"):
        cfg.from_dict({**raw, "data": {"format": "csv"}})
    with pytest.raises(cfg.ConfigError, match="features.*cannot be set with --set"):
        cfg.with_overrides(config, ["features.kind=numeric"])
    # Configs written before schemas keep their meaning, and compare equal.
    old = cfg.from_dict({"data": {"dataset": "synthetic", "data_dir": "d"}})
    assert old.data.source == "synthetic" and old.label is None and old.task == "rating"
    assert "label" not in old.to_dict() and cfg.from_dict(old.to_dict()) == old


def test_the_presets_match_what_the_readme_writes_out():
    ml = presets.movielens_schema("binary", 4.0)
    assert ml.label == Label("rating", "binary", 4.0)
    assert [f.name for f in ml.with_role("user")] == ["gender", "occupation", "age", "zip"]
    assert [f.name for f in ml.with_role("item")] == ["genres", "year"]
    criteo = presets.criteo_schema()
    assert len(criteo.features) == 39 and not criteo.ranks
    assert presets.CRITEO_COLUMNS[0] == "label" and presets.CRITEO_COLUMNS[-1] == "C26"
    config = cfg.from_dict({"data": {"format": "criteo", "train": "day_*"}})
    assert presets.resolve_schema(config) == criteo
    # Parquet files in Criteo's shape name the preset instead of 39 feature blocks.
    named = cfg.from_dict({"data": {"format": "parquet", "train": "p/*.parquet",
                                    "schema": "criteo"}})
    assert presets.resolve_schema(named) == criteo and cfg.from_dict(named.to_dict()) == named
    with pytest.raises(ValueError, match="no preset schema.*data.schema"):
        presets.resolve_schema(cfg.from_dict({"data": {"format": "parquet",
                                                       "train": "p/*.parquet"}}))


@pytest.mark.parametrize("data, extra, message", [
    ({"schema": "Criteo!"}, {}, "data.schema must name a preset schema"),
    ({"format": "Parquet files"}, {}, "data.format must be one of parquet, csv, criteo or"),
    ({"schema": "criteo", "format": "synthetic", "train": []}, {}, "applies to files"),
    ({}, {"label": LABEL_TABLE}, "needs both \\[label\\] and \\[\\[features\\]\\]"),
    ({"schema": "criteo"}, {"features": [{"name": "C1", "kind": "sideways"}]},
     "features\\[0\\].*kind must be one of"),
])
def test_a_named_preset_schema_is_checked(data, extra, message):
    raw = {"data": {"format": "parquet", "train": ["p/*.parquet"], **data}, **extra}
    with pytest.raises(cfg.ConfigError, match=message):
        cfg.from_dict(raw)


@pytest.mark.parametrize("data, message", [
    ({"schema": "movielens"}, "data.schema must name a preset schema: movielens-100k, "
     "synthetic, criteo; got 'movielens'"),
    ({"format": "kaggle"}, "data.format must be one of parquet, csv, criteo, "
     "movielens-100k, synthetic, got 'kaggle'"),
    ({"format": "", "dataset": "criteo"}, "data.dataset must be one of movielens-100k, "
     "synthetic, got 'criteo'"),
])
def test_the_registry_checks_the_names_a_config_gives(data, message):
    config = cfg.from_dict({"data": {"format": "parquet", "train": ["p/*.parquet"], **data}})
    with pytest.raises(cfg.ConfigError, match=message):
        presets.resolve_schema(config)


def test_declared_features_override_a_named_presets_by_name():
    config = cfg.from_dict({
        "data": {"format": "parquet", "train": ["p/*.parquet"], "schema": "criteo"},
        "features": [{"name": "C3", "kind": "categorical", "dtype": "string", "fill": "",
                      "hash_buckets": 1000},
                     {"name": "hour", "kind": "numeric"}]})
    schema = presets.resolve_schema(config)
    criteo = presets.criteo_schema()
    assert [f.name for f in schema.features] == [*(f.name for f in criteo.features), "hour"]
    by_name = {f.name: f for f in schema.features}
    assert by_name["C3"].hash_buckets == 1000 and by_name["C4"] == criteo.features[16]
    assert schema.label == criteo.label
    assert cfg.from_dict(config.to_dict()) == config  # the overrides round-trip
    # A format-implied preset takes overrides too; files without a preset cannot.
    tsv = cfg.from_dict({"data": {"format": "criteo", "train": "day_*"},
                         "features": [{"name": "I1", "kind": "numeric"}]})
    assert {f.name: f for f in presets.resolve_schema(tsv).features}["I1"].transform == "none"
    with pytest.raises(ValueError, match="no preset schema"):
        presets.resolve_schema(cfg.from_dict({
            "data": {"format": "parquet", "train": "p/*.parquet"},
            "features": [{"name": "I1", "kind": "numeric"}]}))


def test_every_registered_preset_has_its_parts():
    for name, preset in presets.REGISTRY.items():
        assert preset.name == name and preset.summary
        schema = preset.schema(cfg.from_dict({}))
        assert schema.label is not None and schema.features
        if preset.is_source:
            assert preset.checksum is not None and preset.time_column
    assert presets.sources() == ("movielens-100k", "synthetic")
    with pytest.raises(ValueError, match="unknown dataset preset 'nope'; known: "
                       "movielens-100k, synthetic, criteo"):
        presets.get("nope")


def test_the_signatures_reserved_names_are_the_schemas():
    from steadyrank.model.data.batches import FACT_ROWS, ROWS
    from steadyrank.model.schema import RESERVED_PREFIX

    assert {layout.ITEM_IDS, layout.USER_IDS, layout.EXAMPLES_INPUT} <= set(RESERVED_NAMES)
    # every name a training batch adds beside the features is under the reserved prefix
    assert all(name.startswith(RESERVED_PREFIX) for name in (LABEL, ROWS, FACT_ROWS))
    for name in (*RESERVED_NAMES, LABEL, "sr_anything"):
        with pytest.raises(SchemaError, match="is reserved"):
            check_feature(Feature(name=name, kind="numeric"), "features[0]")


# ---------------------------------------------------------------- values, float64 checks

def _chunk(**arrays) -> Chunk:
    return Chunk("f.csv", 10, 10, pa.RecordBatch.from_pydict(arrays))


def test_list_values_pad_cut_and_drop_empties():
    chunk = _chunk(t=pa.array([["a", "b"], [], None, ["c"] * 5, ["", "d"]],
                              pa.list_(pa.string())))
    got = columns.list_values(chunk, Feature("t", "multi_hot", dtype="string", max_len=3))
    assert got.tolist() == [["a", "b", ""], ["", "", ""], ["", "", ""], ["c", "c", "c"],
                            ["d", "", ""]]
    joined = _chunk(t=["1|2", "", "7"])
    ints = columns.list_values(joined, Feature("t", "multi_hot", dtype="int64", max_len=2))
    assert ints.tolist() == [[1, 2], [-1, -1], [7, -1]]


def test_bucketize_matches_the_graph_and_truncate_cuts_characters():
    import tensorflow as tf

    values = np.array([-5.0, 18.0, 24.9, 25.0, 60.0, 1e9])
    boundaries = (18.0, 25.0, 35.0)
    want = tf.raw_ops.Bucketize(input=tf.constant(values, tf.float32),
                                boundaries=list(boundaries)).numpy()
    np.testing.assert_array_equal(bucketize(values, boundaries), want)
    np.testing.assert_array_equal(truncated(np.array(["94110", "été", ""], object), 2),
                                  ["94", "ét", ""])


def test_moments_merge_to_the_float64_answer():
    rng = np.random.default_rng(0)
    values = rng.lognormal(5, 2, 10_001)
    moments = Moments()
    for part in np.array_split(values, 7):
        moments.add(part)
    assert moments.count == len(values)
    assert moments.mean == pytest.approx(values.mean(), rel=1e-12)
    assert moments.std == pytest.approx(values.std(), rel=1e-10)
    assert (moments.minimum, moments.maximum) == (values.min(), values.max())


def test_counts_merge_across_batches_in_a_stable_order(monkeypatch):
    from steadyrank.model.data import stats

    monkeypatch.setattr(stats, "COMPACT_ROWS", 3)  # merge after nearly every batch
    counter = ValueCounter("string")
    for part in (["b", "a", "b"], ["c", "a"], ["b", "d", "d"]):
        counter.add(np.array(part, object))
    values, counts = counter.result()
    assert values.tolist() == ["b", "a", "d", "c"] and counts.tolist() == [3, 2, 2, 1]


def test_the_streamed_window_shuffle_is_the_whole_sort():
    n, window = 5000, 300
    times = np.arange(n, dtype=np.float64)
    want = epoch_order(times, f"window:{window}", 4, 2)
    parts = [Rows({"x": np.arange(a, min(a + 777, n))}, np.zeros(min(777, n - a)),
                  times[a:a + 777], np.arange(a, min(a + 777, n))) for a in range(0, n, 777)]
    got = np.concatenate([r.inputs["x"] for r in
                          window_shuffled(parts, window, np.random.default_rng([4, 2]))])
    np.testing.assert_array_equal(got, want)
    sizes = [len(r) for r in rebatch(iter(parts), 1000)]
    assert sizes == [1000] * 5

