"""The trainer: replica pairs published atomically with their offline reproducibility."""

import json

import numpy as np
import pytest

from steadyrank.cli.main import main as cli_main
from steadyrank.model import export, replicas, synth
from steadyrank.model import metrics as repro
from steadyrank.model.config import from_dict
from steadyrank.model.train import prepare_data


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    folder = synth.generate(synth.SynthSpec(users=120, items=150, rows=6_000, seed=5),
                            tmp_path_factory.mktemp("rep") / "data")
    return from_dict({"data": {"dataset": "synthetic", "data_dir": str(folder)},
                      "model": {"embedding_dim": 4, "deep_layers": [8]},
                      "train": {"epochs": 1, "batch_size": 512}})


def quiet(_):
    pass


def test_rounds_publish_both_replicas_with_their_offline_numbers(config, tmp_path):
    base = tmp_path / "models"
    first = replicas.train_round(config, base, "ml", users=30, log=quiet)
    second = replicas.train_round(config, base, "ml", users=30, log=quiet)
    assert (first.version, second.version) == (1, 2)
    assert export.versions(base / "ml") == export.versions(base / "ml-b") == [1, 2]
    assert sorted(p.name for p in base.iterdir()) == ["ml", "ml-b"]  # no staging left
    a, b = export.load(base / "ml" / "2"), export.load(base / "ml-b" / "2")
    assert (a.manifest["seed"], b.manifest["seed"]) == (3, 4)  # new seeds per version
    ev = prepare_data(config).eval
    want = repro.relative_pd(a.score(ev.user_id, ev.item_id), b.score(ev.user_id, ev.item_id))
    for model, partner in ((a, "ml-b"), (b, "ml")):
        offline = model.manifest["offline_reproducibility"]
        assert offline["relative_pd"] == pytest.approx(want, rel=1e-9)
        assert offline["partner"] == partner
        assert 0 <= offline["top10_swap_rate"] <= 1
        assert replicas.offline_metrics(model.manifest) == pytest.approx(second.offline)
    assert second.offline["relative_pd"] > 0


def test_prune_keeps_the_newest_versions(config, tmp_path):
    base = tmp_path / "models"
    for replica in ("ml", "ml-b"):
        for version in (1, 2, 3):
            (base / replica / str(version)).mkdir(parents=True)
    removed = replicas.prune(base, "ml", keep=2, log=quiet)
    assert sorted(str(p.relative_to(base)) for p in removed) == ["ml-b/1", "ml/1"]
    assert export.versions(base / "ml") == [2, 3]
    assert not any(p.name.startswith(".") for p in (base / "ml").iterdir())
    with pytest.raises(ValueError, match="keep must be >= 1"):
        replicas.prune(base, "ml", keep=0)


def test_a_failed_round_publishes_nothing(config, tmp_path, monkeypatch):
    calls = []
    real = replicas.train_and_export

    def fail_on_b(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == 2:
            raise OSError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(replicas, "train_and_export", fail_on_b)
    base = tmp_path / "models"
    with pytest.raises(OSError, match="disk full"):
        replicas.train_round(config, base, "ml", log=quiet)
    assert list(base.iterdir()) == []  # A was trained, but never published alone


def test_run_retrains_on_schedule_until_stopped(config, tmp_path):
    waits = []

    def should_stop(seconds):
        waits.append(seconds)
        return len(waits) == 2

    rounds = replicas.run(config, tmp_path / "m", "ml", retrain_interval=60, keep=1,
                          users=20, log=quiet, should_stop=should_stop)
    assert [r.version for r in rounds] == [1, 2] and waits == [60, 60]
    assert export.versions(tmp_path / "m" / "ml") == [2]  # keep=1 pruned version 1
    with pytest.raises(ValueError, match="retrain interval"):
        replicas.run(config, tmp_path / "m", retrain_interval=-1)


def test_trainer_cli(config, tmp_path, capsys):
    toml = tmp_path / "c.toml"
    toml.write_text(f'[data]\ndataset = "synthetic"\ndata_dir = "{config.data.data_dir}"\n'
                    "[model]\nembedding_dim = 4\ndeep_layers = [8]\n[train]\nepochs = 1\n")
    assert cli_main(["trainer", "--config", str(toml), "--models", str(tmp_path / "m"),
                     "--users", "20"]) == 0
    manifest = json.loads((tmp_path / "m" / "ml-b" / "1" / export.MANIFEST).read_text())
    assert "offline_reproducibility" in manifest
    assert "published" in capsys.readouterr().err
    assert cli_main(["trainer", "--config", str(tmp_path / "missing.toml"),
                     "--models", str(tmp_path / "m")]) != 0
    assert "missing.toml" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(["trainer", "--config", str(toml), "--keep", "0"])
    assert np.isfinite(manifest["offline_reproducibility"]["kendall_tau"])
