"""Synthetic data: deterministic, sharded, skewed, learnable, and verified on load."""

import json

import numpy as np
import pytest

from steadyrank.cli.main import main as cli_main
from steadyrank.core.errors import DataError
from steadyrank.model import config as cfg
from steadyrank.model.data import synth
from steadyrank.model.data.presets import criteo_schema
from steadyrank.model.data.sources import SynthReader
from steadyrank.model.data.splits import prepare_data

SPEC = synth.SynthSpec(users=300, items=2000, rows=25_000, seed=4, shard_rows=10_000)


class Loaded:
    """A synthetic folder's arrays, read whole (the tests' small folders only)."""

    def __init__(self, folder):
        manifest, users, items = synth.load_tables(folder)
        shards = [arrays for _, arrays in synth.iter_shards(folder, manifest)]
        for key in synth.SHARD_KEYS:
            setattr(self, key, np.concatenate([s[key] for s in shards]))
        self.users, self.item_ids, self.item_genres = users, items["item_id"], items["genres"]
        self.rows = len(self.user_id)


def load_synthetic(folder) -> Loaded:
    return Loaded(folder)


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    return synth.generate(SPEC, tmp_path_factory.mktemp("synth") / "ds")


def test_shards_rows_and_determinism(synth_dir, tmp_path):
    manifest = json.loads((synth_dir / "manifest.json").read_text())
    assert [s["rows"] for s in manifest["shards"]] == [10_000, 10_000, 5_000]
    again = synth.generate(SPEC, tmp_path / "again")
    assert json.loads((again / "manifest.json").read_text())["checksum"] == manifest["checksum"]
    other = synth.generate(synth.SynthSpec(**{**SPEC.__dict__, "seed": 5}), tmp_path / "other")
    assert json.loads((other / "manifest.json").read_text())["checksum"] != manifest["checksum"]


def test_data_has_zipf_popularity_side_features_and_planted_signal(synth_dir):
    data = load_synthetic(synth_dir)
    assert data.rows == SPEC.rows and len(data.item_ids) == SPEC.items
    assert set(np.unique(data.rating)) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    counts = np.sort(np.bincount(data.item_id, minlength=SPEC.items + 1)[1:])[::-1]
    assert counts[:20].sum() > 0.3 * SPEC.rows  # a heavy head: top 1% of items > 30% of rows
    assert set(np.unique(data.users["gender"])) == {"F", "M"}
    assert (data.item_genres.sum(axis=1) >= 1).all() and data.item_genres.shape[1] == 19
    # The ratings follow the planted model (the noise is 0.5 before rounding).
    with np.load(synth_dir / "planted.npz") as npz:
        planted = {k: npz[k] for k in npz.files}
    occupation = synth.affinity_codes(data.users)
    truth = synth.planted_rating(planted, occupation, data.item_genres, data.user_id - 1,
                                 data.item_id - 1)
    assert np.corrcoef(np.clip(truth, 1, 5), data.rating)[0, 1] > 0.7
    assert np.all(np.diff(data.timestamp) > 0)


def test_the_synthetic_format_reads_the_folder_joined_with_its_tables(synth_dir):
    prepared = prepare_data(cfg.from_dict({"data": {"dataset": "synthetic",
                                                    "data_dir": str(synth_dir)}}))
    assert prepared.train.rows + prepared.eval.rows == SPEC.rows
    rows = next(prepared.train_batches())
    data = load_synthetic(synth_dir)
    first = np.flatnonzero(prepared.train.mask)[0]
    user = int(rows.inputs["user_id"][0])
    assert user == data.user_id[first]
    # The user's facts were joined from the users table into the rows.
    facts = prepared.stats.facts["user_id"]
    at = int(np.searchsorted(facts.ids, user))
    assert facts.values["gender"][at] == data.users["gender"][user - 1]
    with pytest.raises(cfg.ConfigError, match="data.dataset must be one of"):
        prepare_data(cfg.from_dict({"data": {"dataset": "netflix"}}))


def test_multi_hot_columns_read_as_the_manifests_value_names(synth_dir):
    manifest, _, items = synth.load_tables(synth_dir)
    names = synth.multi_hot_names(manifest, "genres")
    assert names == synth.AFFINITY_ITEM.values and names[0] == "none" and len(names) == 19
    genres = SynthReader(synth_dir).items.column("genres").to_pylist()
    for row in (0, 1, len(genres) - 1):
        assert genres[row] == [names[c] for c in np.flatnonzero(items["genres"][row])]
    with pytest.raises(KeyError, match="no multi-hot column 'year'"):
        synth.multi_hot_names(manifest, "year")


def test_a_reader_starts_anywhere_in_the_shards(synth_dir):
    reader = SynthReader(synth_dir)
    whole = np.concatenate([c.batch.column("item_id").to_numpy() for c in reader.chunks(4096)])
    from_row = np.concatenate([c.batch.column("item_id").to_numpy()
                               for c in reader.chunks(4096, start=12_345)])
    np.testing.assert_array_equal(from_row, whole[12_345:])
    assert reader.count_rows() == SPEC.rows


def test_corrupt_and_missing_files_are_named(synth_dir, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in synth_dir.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    (copy / "interactions-00001.npz").write_bytes(b"garbage")
    with pytest.raises(DataError, match="interactions-00001.npz: SHA-256 does not match"):
        load_synthetic(copy)
    (copy / "interactions-00001.npz").unlink()
    with pytest.raises(DataError, match="interactions-00001.npz: missing"):
        load_synthetic(copy)
    with pytest.raises(DataError, match="manifest.json: missing"):
        load_synthetic(tmp_path / "nowhere")


def test_cli_synth_and_bad_values(tmp_path, capsys):
    out = tmp_path / "cli"
    assert cli_main(["data", "synth", "--users", "10", "--items", "50", "--rows", "100",
                     "--out", str(out)]) == 0
    assert load_synthetic(out).rows == 100
    assert cli_main(["data", "synth", "--rows", "100", "--out", str(out)]) == 1
    assert "already exists; pass --force" in capsys.readouterr().err
    assert cli_main(["data", "synth", "--items", "0", "--out", str(tmp_path / "x")]) == 2
    assert "--items must be >= 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_click_data_from_a_planted_mlp(tmp_path):
    spec = synth.SynthSpec(users=300, items=500, rows=40_000, seed=2, planted="mlp",
                           task="click", click_rate=0.2)
    data = load_synthetic(synth.generate(spec, tmp_path / "ctr"))
    assert set(np.unique(data.rating)) == {0.0, 1.0}
    assert 0.17 < data.rating.mean() < 0.23  # calibrated to the click rate
    assert np.all(np.diff(data.timestamp) > 0)  # a stream in time order
    with np.load(tmp_path / "ctr" / "planted.npz") as npz:
        planted = {k: npz[k] for k in npz.files}
    assert {"w0", "w1", "w2"} <= set(planted)
    occupation = synth.affinity_codes(data.users)
    score = synth.planted_score(planted, occupation, data.item_genres, data.user_id - 1,
                                data.item_id - 1)
    p = 1 / (1 + np.exp(-synth.click_logit(planted, score)))
    # Clicks follow the planted probabilities: in each decile of p, the click share is the
    # mean p (calibration), and the deciles span a wide range.
    edges = np.quantile(p, np.linspace(0, 1, 11))
    bins = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, 9)
    for b in range(10):
        assert abs(data.rating[bins == b].mean() - p[bins == b].mean()) < 0.03, b
    assert p[bins == 9].mean() > 5 * p[bins == 0].mean()
    # The interaction is not bilinear: the planted MLP is not a dot product of the factors.
    u, v = planted["user_factors"][:50], planted["item_factors"][:50]
    mlp = synth._mlp(planted, np.concatenate([u, v, u * v * np.sqrt(u.shape[1])], axis=1))
    assert abs(np.corrcoef(mlp, np.einsum("ij,ij->i", u, v))[0, 1]) < 0.9
    with pytest.raises(ValueError, match="--task must be rating or click"):
        synth.SynthSpec(users=1, items=1, rows=1, task="ctr").check()


def test_criteo_synth_is_deterministic_skewed_drifting_and_readable(tmp_path):
    from steadyrank.model.data import criteo_synth

    spec = criteo_synth.CriteoSpec(rows=60_000, shard_rows=25_000, seed=3, format="parquet")
    out = criteo_synth.generate(spec, tmp_path / "c", log=lambda _: None)
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["rows"] for s in manifest["shards"]] == [25_000, 25_000, 10_000]
    again = criteo_synth.generate(spec, tmp_path / "again", log=lambda _: None)
    assert json.loads((again / "manifest.json").read_text())["checksum"] == manifest["checksum"]
    cards = manifest["cardinalities"]
    assert cards[0] == 10 and cards[-1] == 1_000_000 and cards == sorted(cards)
    assert abs(manifest["click_rate"] - 0.25) < 0.02
    import pyarrow.parquet as pq

    table = pq.read_table(out / "part-00000.parquet")
    assert table.column_names[:2] == ["label", "I1"] and table.column_names[-1] == "ts"
    c26 = table.column("C26").drop_null().to_pylist()
    assert all(len(v) == 8 and int(v, 16) >= 0 for v in c26[:100])  # 8-digit hex ids
    counts = np.sort(np.unique(c26, return_counts=True)[1])[::-1]
    assert counts[:100].sum() > 0.2 * len(c26)  # Zipf: a heavy head
    assert 0.0 < table.column("I1").null_count / table.num_rows < 0.5
    # It trains through the Criteo preset (reading Parquet with a time column).
    config = cfg.from_dict({"data": {"format": "parquet", "train": [str(out / "*.parquet")],
                                     "time_column": "ts", "split": "time"},
                            "label": {"column": "label", "task": "binary"},
                            "features": [f.to_dict() for f in criteo_schema().features]})
    prepared = prepare_data(config)
    assert prepared.train.rows == 48_000 and prepared.eval.mask[-12_000:].all()
    assert prepared.stats.vocabularies["C1"].to_dict()["values"] == 11  # 10, and missing


def test_criteo_synth_writes_criteo_tsv(tmp_path):
    from steadyrank.model.data import criteo_synth

    out = criteo_synth.generate(criteo_synth.CriteoSpec(rows=3000, shard_rows=2000,
                                                        format="criteo"), tmp_path / "t",
                                log=lambda _: None)
    first = (out / "day-00000.tsv").read_text().splitlines()[0].split("\t")
    assert len(first) == 40 and first[0] in ("0", "1")
    config = cfg.from_dict({"data": {"format": "criteo", "train": [str(out / "day-*.tsv")]}})
    assert prepare_data(config).train.rows == 2400
    with pytest.raises(ValueError, match="--format must be one of parquet, criteo"):
        criteo_synth.CriteoSpec(rows=10, format="csv").check()


def test_criteo_stream_appends_shards_that_continue_the_whole_run(tmp_path):
    from steadyrank.core.errors import DataError
    from steadyrank.model.data import criteo_synth

    spec = criteo_synth.CriteoSpec(rows=7_000, shard_rows=2_000, seed=5)
    whole = criteo_synth.generate(spec, tmp_path / "whole", log=lambda _: None)
    live, lines, naps = tmp_path / "live", [], []
    assert criteo_synth.stream(spec, live, count=1, log=lines.append) == ["part-00000.parquet"]
    assert not list(live.glob(".*.tmp"))  # each shard is put in place whole
    # Resumed with no start: the next shard on, one wait between shards, to the end.
    assert criteo_synth.stream(spec, live, every=5, log=lines.append, sleep=naps.append) == [
        "part-00001.parquet", "part-00002.parquet", "part-00003.parquet"]
    assert naps == [5, 5]
    for name in ("part-00000.parquet", "part-00003.parquet"):  # the same bytes
        assert (live / name).read_bytes() == (whole / name).read_bytes()
    assert json.loads((live / "manifest.json").read_text()) == json.loads(
        (whole / "manifest.json").read_text())
    # An explicit start: a shard already there is kept.
    assert criteo_synth.stream(spec, live, start=2, count=1, log=lines.append) == []
    assert "already there" in lines[-1]
    # Restarted once the stream is complete (a stack coming back up): nothing, no error.
    assert criteo_synth.stream(spec, live, every=5, log=lines.append) == []
    assert "the stream is complete (4 shards)" in lines[-1]
    with pytest.raises(ValueError, match=r"--start-shard must be in \[0, 3\].*got 4"):
        criteo_synth.stream(spec, live, start=4, log=lines.append)
    other = criteo_synth.CriteoSpec(rows=7_000, shard_rows=2_000, seed=6)
    with pytest.raises(DataError, match="another spec"):
        criteo_synth.stream(other, live, log=lines.append)
    with pytest.raises(ValueError, match="--every must be >= 0"):
        criteo_synth.stream(spec, tmp_path / "x", every=-1, log=lines.append)


def test_data_synth_cli_streams(tmp_path, capsys):
    from steadyrank.cli.main import main

    out = tmp_path / "s"
    args = ["data", "synth", "--schema", "criteo", "--rows", "3000", "--shard-rows", "1000",
            "--out", str(out)]
    assert main([*args, "--shards", "2"]) == 0
    assert sorted(p.name for p in out.glob("part-*")) == ["part-00000.parquet",
                                                          "part-00001.parquet"]
    assert main([*args, "--start-shard", "2"]) == 0
    assert len(list(out.glob("part-*"))) == 3
    assert main([*args, "--shards", "1", "--force"]) == 2
    assert "--force replaces a whole folder" in capsys.readouterr().err
    assert main(["data", "synth", "--rows", "10", "--every", "1", "--out", str(tmp_path / "m")]
                ) == 2
    assert "apply to --schema criteo" in capsys.readouterr().err


def test_the_generator_draws_only_the_kinds_a_preset_may_declare():
    from steadyrank.model.data.presets.movielens import Draw

    with pytest.raises(ValueError, match="unknown draw kind 'normal' for 'height'"):
        synth._draw(Draw("height", "normal"), 3, np.random.default_rng(0))
