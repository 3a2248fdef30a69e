"""Bring your own data: a click log with column names SteadyRank never saw, in CSV and in
Parquet, trains, exports and scores with only a config; Criteo TSV trains too; bad data
fails before training starts, naming the file, the column and the row, and writes nothing."""

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from steadyrank.cli.main import main as cli_main
from steadyrank.core.errors import DataError
from steadyrank.model import config as cfg
from steadyrank.model.artifact import reader
from steadyrank.model.data.splits import prepare_data
from tests.shop_data import click_log, criteo_lines, write_config, write_dataset


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_an_unseen_schema_trains_exports_and_scores_with_only_a_config(tmp_path, fmt):
    folder = write_dataset(tmp_path / "clicks", fmt)
    config_path = write_config(tmp_path / "shop.toml", folder, fmt)
    assert cli_main(["train", "--config", str(config_path), "--export-dir",
                     str(tmp_path / "models" / "shop"), "--checkpoint-dir",
                     str(tmp_path / "ck")]) == 0
    model = reader.load(tmp_path / "models" / "shop")
    manifest = model.manifest
    assert manifest["metrics"]["auc"] > 0.7  # it learnt the planted tastes
    assert manifest["data"]["train_rows"] == 4800 and manifest["data"]["eval_rows"] == 1200
    schema = {f["name"]: f for f in manifest["schema"]["features"]}
    assert schema["brand"]["distinct_values"] == 6 and schema["brand"]["min_count"] == 3
    assert schema["price"]["transform"] == "log1p"
    assert schema["hour"]["statistics"]["mean"] == pytest.approx(11.5, abs=0.6)
    assert sorted(model.signature_defs) == ["__saved_model_init_op", "catalog", "examples",
                                            "rank", "rarity", "serving_default"]  # no user facts
    assert set(model.input_names) == {"shopper", "sku", "device", "hour"}
    scores = model.score({"shopper": np.array(["s001", "s001", "new-shopper"], object),
                          "sku": np.array([1000, 1001, 1000]),
                          "device": np.array(["ios", "ios", "web"], object),
                          "hour": np.array([9.0, 9.0, 20.0], np.float32)})
    assert scores.shape == (3,) and ((scores > 0) & (scores < 1)).all()
    ranked = model.rank({"shopper": "s001", "item_ids": np.array([1000, 1001, 1002]),
                         "device": "ios", "hour": np.float32(9.0)})
    np.testing.assert_allclose(ranked[:2], scores[:2], rtol=1e-5)
    assert set(model.item_ids) <= set(range(1000, 1200)) and len(model.item_ids) > 150


def test_csv_and_parquet_of_the_same_rows_train_the_same_model(tmp_path):
    paths = {}
    for fmt in ("parquet", "csv"):
        folder = write_dataset(tmp_path / fmt, fmt)
        config = cfg.load(write_config(tmp_path / f"{fmt}.toml", folder, fmt))
        prepared = prepare_data(config)
        paths[fmt] = prepared
    a, b = paths["parquet"], paths["csv"]
    assert a.stats.to_dict() == b.stats.to_dict()
    batch_a, batch_b = next(a.train_batches()), next(b.train_batches())
    for name in batch_a.inputs:
        np.testing.assert_array_equal(batch_a.inputs[name], batch_b.inputs[name])


def test_a_csv_without_a_header_reads_its_declared_columns(tmp_path):
    folder = write_dataset(tmp_path / "with", "csv")
    with_header = prepare_data(cfg.load(write_config(tmp_path / "a.toml", folder, "csv")))
    for name in ("train-0", "train-1", "eval-0"):
        lines = (folder / f"{name}.csv").read_text().splitlines()
        columns = lines[0].split(",")
        (folder / f"{name}.csv").write_text("\n".join(lines[1:]) + "\n")
    config = cfg.load(write_config(tmp_path / "b.toml", folder, "csv"),
                      ["data.header=false", f"data.columns={json.dumps(columns)}"])
    without = prepare_data(config)
    assert without.stats.to_dict() == with_header.stats.to_dict()


# ------------------------------------------------------------------------------ bad data

def _config_for(tmp_path: Path, fmt: str, table: pa.Table) -> Path:
    folder = write_dataset(tmp_path / "bad", fmt, table)
    return write_config(tmp_path / "bad.toml", folder, fmt)


def _train_fails(tmp_path: Path, config: Path, capsys) -> str:
    code = cli_main(["train", "--config", str(config), "--export-dir",
                     str(tmp_path / "models" / "m"), "--checkpoint-dir", str(tmp_path / "ck")])
    err = capsys.readouterr().err
    assert code in (1, 2), err
    assert not (tmp_path / "models").exists() and not (tmp_path / "ck").exists()
    return err


def test_a_missing_column_names_the_file_and_column(tmp_path, capsys):
    table = click_log().drop_columns(["device"])
    for fmt in ("parquet", "csv"):
        err = _train_fails(tmp_path / fmt, _config_for(tmp_path / fmt, fmt, table), capsys)
        assert "train-0" in err and "'device'" in err


def test_a_value_that_does_not_parse_names_the_row(tmp_path, capsys):
    table = click_log()
    sku = table.column("sku").to_pylist()
    table = table.set_column(1, "sku", pa.array([str(v) for v in sku], pa.string()))
    sku_text = table.column("sku").to_pylist()
    sku_text[4800 + 7] = "12x"  # eval-0.csv (rows 4800 on), its row 8
    bad = table.set_column(1, "sku", pa.array(sku_text, pa.string()))
    err = _train_fails(tmp_path, _config_for(tmp_path, "csv", bad), capsys)
    assert "eval-0.csv, row 8: column 'sku': '12x' is not a valid int64" in err


def test_a_missing_value_without_fill_names_the_row(tmp_path, capsys):
    table = click_log()
    hours = table.column("hour").to_pylist()
    hours[2503] = None  # train-1, row 4
    bad = table.set_column(table.column_names.index("hour"), "hour", pa.array(hours))
    for fmt in ("parquet", "csv"):
        err = _train_fails(tmp_path / fmt, _config_for(tmp_path / fmt, fmt, bad), capsys)
        assert f"train-1.{fmt}, row 4: column 'hour': missing value" in err
        assert "fill" in err


def test_a_label_outside_0_and_1_names_the_row(tmp_path, capsys):
    table = click_log()
    clicked = table.column("clicked").to_pylist()
    clicked[10] = 3
    bad = table.set_column(table.column_names.index("clicked"), "clicked", pa.array(clicked))
    err = _train_fails(tmp_path, _config_for(tmp_path, "parquet", bad), capsys)
    assert "train-0.parquet, row 11: column 'clicked': label 3 is not 0 or 1" in err


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_corrupt_or_truncated_parquet_file_is_named(tmp_path, capsys, damage):
    config = _config_for(tmp_path, "parquet", click_log())
    path = tmp_path / "bad" / "train-1.parquet"
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2] if damage == "truncated" else b"not parquet" * 50)
    err = _train_fails(tmp_path, config, capsys)
    assert "train-1.parquet: not a readable Parquet file" in err


def test_a_glob_that_matches_nothing_is_named(tmp_path, capsys):
    config = _config_for(tmp_path, "parquet", click_log())
    text = config.read_text().replace("train-*.parquet", "tran-*.parquet")
    config.write_text(text)
    err = _train_fails(tmp_path, config, capsys)
    assert "tran-*.parquet: matches no file" in err


@pytest.mark.parametrize("edit, message", [
    (('kind = "numeric"\nrole = "item"\ntransform = "log1p"',
      'kind = "numerical"\nrole = "item"\ntransform = "log1p"'),
     "features[3] ('price').kind must be one of categorical, numeric, multi_hot"),
    (('role = "context"\ndtype = "string"\nhash_buckets', 'role = "session"\ndtype = "string"\n'
      'hash_buckets'), "features[4] ('device').role must be one of"),
    (("min_count = 3", "min_cuont = 3"),
     "features[2] ('brand'): unknown key(s) min_cuont"),
    (('role = "item_id"', 'role = "user_id"'),
     "2 features have role 'user_id' (shopper, sku); at most one may"),
])
def test_schema_mistakes_are_named_before_anything_is_read(tmp_path, capsys, edit, message):
    config = _config_for(tmp_path, "parquet", click_log(300))
    config.write_text(config.read_text().replace(*edit, 1))
    err = _train_fails(tmp_path, config, capsys)
    assert message in err


def test_every_file_a_glob_matches_is_read(tmp_path):
    folder = write_dataset(tmp_path / "ok", "parquet")
    shutil.copy(folder / "train-0.parquet", folder / "train-9.parquet")
    config = cfg.load(write_config(tmp_path / "ok.toml", folder, "parquet"))
    prepared = prepare_data(config)
    assert prepared.train.rows == 2500 + 2300 + 2500
    assert json.dumps(prepared.stats.to_dict())  # a manifest-ready summary


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_a_reader_counts_each_files_rows(tmp_path, fmt):
    folder = write_dataset(tmp_path / "ok", fmt)
    config = cfg.load(write_config(tmp_path / "ok.toml", folder, fmt))
    reader_ = prepare_data(config).train.reader
    ext = "parquet" if fmt == "parquet" else "csv"
    assert reader_.rows_by_file() == {str(folder / f"train-0.{ext}"): 2500,
                                      str(folder / f"train-1.{ext}"): 2300}
    assert reader_.count_rows() == 4800


def test_criteo_tsv_trains_with_its_implied_schema(tmp_path):
    (tmp_path / "day_0.tsv").write_text(criteo_lines())
    config = cfg.from_dict({"data": {"format": "criteo", "train": [str(tmp_path / "day_*.tsv")]},
                            "model": {"embedding_dim": 4, "deep_layers": [8]},
                            "train": {"epochs": 2, "batch_size": 256, "learning_rate": 0.01}})
    from steadyrank.model.training.workflow import train_and_export

    path = train_and_export(config, 1, tmp_path / "models" / "criteo", tmp_path / "ck",
                            log=lambda m: None)
    model = reader.load(path)
    assert model.manifest["metrics"]["auc"] > 0.6
    assert not model.ranks and "rank" not in model.signature_defs
    assert "no user_id and item_id" in model.manifest["ranking"]  # the manifest says why
    assert len(model.input_names) == 39
    with pytest.raises(reader.ExportError, match="no catalog signature"):
        _ = model.item_ids


def test_reading_a_missing_file_is_a_data_error(tmp_path):
    config = cfg.from_dict({"data": {"format": "parquet", "train": [str(tmp_path / "x.parquet")]},
                            "label": {"column": "y"},
                            "features": [{"name": "a", "kind": "numeric"}]})
    with pytest.raises(DataError, match="x.parquet: no such file"):
        prepare_data(config)


def test_a_schema_draft_from_the_data_trains_once_roles_are_set(tmp_path, capsys):
    folder = write_dataset(tmp_path / "clicks", "parquet")
    assert cli_main(["data", "schema", str(folder / "train-*.parquet"), "--rows", "1000"]) == 0
    text = capsys.readouterr().out
    assert "from 1,000 rows" in text and 'time_column = "ts"' in text
    assert 'column = "clicked"  # looks like the label' in text and 'task = "binary"' in text
    assert 'name = "tags"\nkind = "multi_hot"' in text
    assert 'name = "price"\nkind = "numeric"' in text and "fill = 0.0  # " in text
    # The ids and the sku's facts are guessed (the click log plants brand and price per sku).
    assert 'name = "shopper"\nkind = "categorical"\nrole = "user_id"  # its name hints' in text
    assert 'name = "sku"\nkind = "categorical"\nrole = "item_id"  # its name hints' in text
    assert 'name = "brand"\nkind = "categorical"\nrole = "item"  # the same value' in text
    # The draft trains as it is.
    (tmp_path / "draft.toml").write_text(text + "\n[train]\nepochs = 1\n")
    config = cfg.load(tmp_path / "draft.toml")
    assert config.label.column == "clicked"
    prepared = prepare_data(config)
    assert prepared.schema.user_id.name == "shopper" and prepared.train.rows == 3840
    assert prepared.schema.item_id.name == "sku"
    assert cli_main(["data", "schema", str(tmp_path / "none-*.parquet")]) == 1
    assert "matches no file" in capsys.readouterr().err


@pytest.mark.parametrize("load", ["memory", "stream"])
def test_a_variant_with_a_vocabulary_threshold_trains_on_the_base_configs_data(tmp_path, load):
    """`compare` prepares the data once with the base config and trains variants on it: a
    variant whose vocabulary threshold shrinks the tables gets the rows of its own tables
    from the pipeline (each of the 30 values is seen ~100 times, so a threshold of 150
    keeps only the missing value), not the base config's."""
    from dataclasses import replace

    from steadyrank.model.training.trainer import train

    (tmp_path / "day_0.tsv").write_text(criteo_lines())
    base = cfg.from_dict({"data": {"format": "criteo", "train": [str(tmp_path / "day_*.tsv")],
                                   "load": load},
                          "model": {"embedding_dim": 4, "deep_layers": [8]},
                          "train": {"epochs": 1, "batch_size": 256, "learning_rate": 0.01,
                                    "shuffle": "window:500"}})
    prepared = prepare_data(base, log=lambda m: None)
    variant = replace(base, model=replace(base.model, min_id_count=150))
    result = train(variant, 1, prepared, log=lambda m: None)
    # the missing value ("", ~10% of rows) and the out-of-vocabulary row
    assert result.members[0].encoder.tables["C1"].rows == 2
    assert np.isfinite(result.history[-1]["loss"])
    # and the base config still gets its full tables from the same prepared data
    full = train(base, 1, prepared, log=lambda m: None).members[0].encoder.tables["C1"]
    assert full.rows == 32  # 30 values, "" and out of vocabulary
