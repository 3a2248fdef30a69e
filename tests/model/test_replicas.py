"""The trainer: replica pairs published atomically with their offline reproducibility."""

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest

from steadyrank.cli.main import main as cli_main
from steadyrank.model.artifact import gate as gate_record
from steadyrank.model.artifact import layout, reader
from steadyrank.model.config import from_dict
from steadyrank.model.data import synth
from steadyrank.model.data.splits import prepare_data
from steadyrank.model.measures import metrics as repro
from steadyrank.model.publishing import replicas
from tests.conftest import eval_columns


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
    assert layout.versions(base / "ml") == layout.versions(base / "ml-b") == [1, 2]
    # No staging left; the churn record of version 2 against 1 sits beside the models.
    assert sorted(p.name for p in base.iterdir()) == [".churn-gate-ml.json", "ml", "ml-b"]
    a, b = reader.load(base / "ml" / "2"), reader.load(base / "ml-b" / "2")
    assert (a.manifest["seed"], b.manifest["seed"]) == (3, 4)  # new seeds per version
    ev = eval_columns(prepare_data(config))
    want = repro.relative_pd(a.score(ev.inputs), b.score(ev.inputs))
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
    assert layout.versions(base / "ml") == [2, 3]
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
    assert layout.versions(tmp_path / "m" / "ml") == [2]  # keep=1 pruned version 1
    with pytest.raises(ValueError, match="retrain interval"):
        replicas.run(config, tmp_path / "m", retrain_interval=-1)


def test_trainer_cli(config, tmp_path, capsys):
    toml = tmp_path / "c.toml"
    toml.write_text(f'[data]\ndataset = "synthetic"\ndata_dir = "{config.data.data_dir}"\n'
                    "[model]\nembedding_dim = 4\ndeep_layers = [8]\n[train]\nepochs = 1\n")
    assert cli_main(["trainer", "--config", str(toml), "--models", str(tmp_path / "m"),
                     "--users", "20"]) == 0
    # Named after the config file (no [serving] name): c and c-b.
    assert sorted(p.name for p in (tmp_path / "m").iterdir() if not p.name.startswith(".")
                  ) == ["c", "c-b"]
    manifest = json.loads((tmp_path / "m" / "c-b" / "1" / layout.MANIFEST).read_text())
    assert "offline_reproducibility" in manifest
    assert "published" in capsys.readouterr().err
    assert cli_main(["trainer", "--config", str(tmp_path / "missing.toml"),
                     "--models", str(tmp_path / "m")]) != 0
    assert "missing.toml" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(["trainer", "--config", str(toml), "--keep", "0"])
    assert np.isfinite(manifest["offline_reproducibility"]["kendall_tau"])


def test_churn_gate_holds_back_a_version_over_the_bound(config, tmp_path):
    base = tmp_path / "models"
    first = replicas.train_round(config, base, "ml", users=30, log=quiet)
    assert first.published and first.churn is None  # nothing served yet: nothing to churn
    strict = replicas.Gate(max_swap=0.0)  # any change in a top-10 list is too much
    held = replicas.train_round(config, base, "ml", users=30, log=quiet, gate=strict)
    assert not held.published and held.paths == () and held.version == 2
    assert layout.versions(base / "ml") == layout.versions(base / "ml-b") == [1]
    assert not [p for p in base.iterdir() if p.name.startswith(".staging")]
    gate = gate_record.read_gate(base, "ml")
    assert gate["published"] is False and gate["version"] == 2 and gate["rejected"] == 1
    assert "--max-churn-swap" in gate["reasons"][0]
    assert gate["churn"]["version"] == 1 and gate["churn"]["top10_swap_rate"] > 0
    passed = replicas.train_round(config, base, "ml", users=30, log=quiet,
                                  gate=replicas.Gate(max_swap=1.0, max_pd=10.0))
    assert passed.published and layout.versions(base / "ml") == [1, 2]
    manifest = reader.load(base / "ml" / "2").manifest
    assert manifest["churn_vs_previous"] == pytest.approx(passed.churn)
    assert gate_record.read_gate(base, "ml")["published"] is True
    assert gate_record.read_gate(base, "ml")["rejected"] == 1  # the count is kept


def test_warm_start_lowers_version_churn(config, tmp_path):
    # Trained close to convergence: a retrain of a barely trained model moves anyway.
    config = replace(config, train=replace(config.train, epochs=6, learning_rate=0.02))
    cold, warm = tmp_path / "cold", tmp_path / "warm"
    replicas.train_round(config, cold, "ml", users=30, log=quiet)
    shutil.copytree(cold, warm)
    cold_round = replicas.train_round(config, cold, "ml", users=30, log=quiet)
    warm_round = replicas.train_round(config, warm, "ml", users=30, log=quiet,
                                      warm_start=True)
    assert warm_round.churn["relative_pd"] < cold_round.churn["relative_pd"]
    assert warm_round.churn["top10_swap_rate"] <= cold_round.churn["top10_swap_rate"]
    manifest = reader.load(warm / "ml" / "2").manifest
    assert manifest["warm_start"] == str(warm / "ml" / "1")
    assert reader.load(cold / "ml" / "2").manifest["warm_start"] is None


def test_vary_order_keeps_the_init_seed(config, tmp_path):
    replicas.train_round(config, tmp_path, "ml", users=20, log=quiet, vary="order")
    a, b = (reader.load(tmp_path / n / "1").manifest for n in ("ml", "ml-b"))
    assert (a["seed"], a["order_seed"], b["seed"], b["order_seed"]) == (1, 1, 1, 2)
    assert a["vary"] == b["vary"] == "order"


def exported_after_a_poll(base) -> str:
    """The server's /metrics text after its manager looked at ``base`` once (model ml's
    version 1 folder there; no model loads)."""
    from prometheus_client import generate_latest

    from steadyrank.service.serve.manager import ModelManager
    from steadyrank.service.serve.telemetry import ServerMetrics

    (base / "ml" / "1").mkdir(parents=True)
    metrics = ServerMetrics()
    manager = ModelManager(base, metrics, poll_seconds=0,
                           loader=lambda *a: (_ for _ in ()).throw(OSError("no model")))
    manager.poll()
    return generate_latest(metrics.registry).decode()


def test_server_exports_the_churn_gate(config, tmp_path):
    gate_record.gate_path(tmp_path, "ml").write_text(json.dumps({
        "model": "ml", "version": 2, "published": False, "rejected": 3,
        "churn": {"version": 1, "relative_pd": 0.04, "top10_swap_rate": 0.3}}))
    text = exported_after_a_poll(tmp_path)
    assert 'steadyrank_retrain_published{model="ml"} 0.0' in text
    assert 'steadyrank_retrain_held_back_versions{model="ml"} 3.0' in text
    assert 'steadyrank_retrain_churn_topk_swap_rate{k="10",model="ml"} 0.3' in text
    assert 'steadyrank_retrain_churn_prediction_difference_relative{model="ml"} 0.04' in text


def test_server_exports_a_following_trainers_status(tmp_path):
    gate_record.write_follow_status(tmp_path, "ml", {
        "model": "ml", "round": 7, "rows": 1500, "progressive_log_loss": 0.45,
        "oov_share": 0.125, "pending_shards": 2, "waiting_since": 1700000000.0,
        "round_time": 1699999000.0, "progressive_rmse": None})
    gate_record.follow_status_path(tmp_path, "other").write_text("{not json")
    text = exported_after_a_poll(tmp_path)
    assert 'steadyrank_follow_round{model="ml"} 7.0' in text
    assert 'steadyrank_follow_round_rows{model="ml"} 1500.0' in text
    assert 'steadyrank_follow_progressive_log_loss{model="ml"} 0.45' in text
    assert 'steadyrank_follow_oov_share{model="ml"} 0.125' in text
    assert 'steadyrank_follow_pending_shards{model="ml"} 2.0' in text
    assert 'steadyrank_follow_waiting_since_timestamp_seconds{model="ml"} 1.7e+09' in text
    assert 'steadyrank_follow_progressive_rmse{model="ml"}' not in text  # a binary task
    assert 'model="other"' not in text  # an unreadable status is skipped
