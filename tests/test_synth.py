"""Synthetic data: deterministic, sharded, skewed, learnable, and verified on load."""

import json

import numpy as np
import pytest

from steadyrank.cli.main import main as cli_main
from steadyrank.core.errors import DataError
from steadyrank.model.data import synth
from steadyrank.model.data.sources import load_dataset, load_synthetic

SPEC = synth.SynthSpec(users=300, items=2000, rows=25_000, seed=4, shard_rows=10_000)


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
    assert len(data) == SPEC.rows and len(data.item_ids) == SPEC.items
    assert set(np.unique(data.rating)) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    counts = np.sort(np.bincount(data.item_id, minlength=SPEC.items + 1)[1:])[::-1]
    assert counts[:20].sum() > 0.3 * SPEC.rows  # a heavy head: top 1% of items > 30% of rows
    assert set(np.unique(data.users["gender"])) == {"F", "M"}
    assert (data.item_genres.sum(axis=1) >= 1).all() and data.item_genres.shape[1] == 19
    # The ratings follow the planted model (the noise is 0.5 before rounding).
    with np.load(synth_dir / "planted.npz") as npz:
        planted = {k: npz[k] for k in npz.files}
    occupation = np.searchsorted(np.array(synth.OCCUPATIONS), data.users["occupation"])
    truth = synth.planted_rating(planted, occupation, data.item_genres, data.user_id - 1,
                                 data.item_id - 1)
    assert np.corrcoef(np.clip(truth, 1, 5), data.rating)[0, 1] > 0.7
    assert np.all(np.diff(data.timestamp) > 0)


def test_load_dataset_dispatch(synth_dir):
    assert len(load_dataset("synthetic", synth_dir)) == SPEC.rows
    with pytest.raises(ValueError, match="unknown dataset 'netflix'"):
        load_dataset("netflix", synth_dir)


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
    assert len(load_synthetic(out)) == 100
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
    occupation = np.searchsorted(np.array(synth.OCCUPATIONS), data.users["occupation"])
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
