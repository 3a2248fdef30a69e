"""Distributed training: strategies from TF_CONFIG, a local parameter-server cluster, sharding.

The cluster test trains on 10^6 synthetic rows with 10^6 item ids on 2 parameter servers and
2 workers (processes on loopback), as `steadyrank cluster` runs it; marked slow (minutes).
"""

import json
import os
import subprocess
import sys

import pytest
import tensorflow as tf

from steadyrank.cli.main import main as cli_main
from steadyrank.model.artifact import reader
from steadyrank.model.config import ConfigError, from_dict, load
from steadyrank.model.data import synth
from steadyrank.model.data.splits import prepare_data
from steadyrank.model.measures import metrics
from steadyrank.model.training import distributed
from steadyrank.model.training import local_cluster as cluster
from steadyrank.service import client
from steadyrank.service.serve.server import ServerConfig, ServerThread
from steadyrank.service.stubs import ranking_pb2_grpc
from tests.conftest import REPO, data_overrides, eval_columns


@pytest.mark.parametrize("tf_config, message", [
    ("", "needs TF_CONFIG with 'ps' and 'worker'"),
    ("{not json", "TF_CONFIG is not JSON"),
    ('{"task": {}}', "'cluster' entry"),
    ('{"cluster": {"worker": ["a:1"]}}', "needs TF_CONFIG with 'ps'"),
    ('{"cluster": {"worker": ["a:1"], "ps": ["b:2"]}, "task": {"type": "worker", "index": 0}}',
     "only the chief trains"),
])
def test_parameter_server_strategy_needs_a_cluster(monkeypatch, tf_config, message):
    monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(distributed.ClusterError, match=message):
        distributed.make_strategy("parameter-server")


def test_strategy_names_are_checked():
    assert distributed.make_strategy("default") is None
    with pytest.raises(distributed.ClusterError, match="unknown strategy 'async'"):
        distributed.make_strategy("async")
    with pytest.raises(ConfigError, match="train.strategy must be one of"):
        from_dict({"train": {"strategy": "async"}})


def test_cluster_spec_and_arguments():
    spec = cluster.cluster_spec(ps=2, workers=3)
    assert [len(spec[k]) for k in ("chief", "worker", "ps")] == [1, 3, 2]
    addresses = [a for k in spec for a in spec[k]]
    assert len(set(addresses)) == 6 and all(a.startswith("127.0.0.1:") for a in addresses)
    config = json.loads(cluster.tf_config(spec, "ps", 1))
    assert config["task"] == {"type": "ps", "index": 1}
    with pytest.raises(distributed.ClusterError, match="--ps >= 1"):
        cluster.cluster_spec(ps=0, workers=1)
    assert cluster._strategy_flag(["train", "--config", "c"], "parameter-server") == [
        "--set", "train.strategy=parameter-server"]
    assert cluster._strategy_flag(["rank", "--user", "1"], "parameter-server") == []


def test_cluster_cli_errors(capsys):
    assert cli_main(["cluster", "--ps", "1", "--workers", "1"]) == 2
    assert "give the steadyrank command" in capsys.readouterr().err
    assert cli_main(["cluster", "--ps", "0", "--", "train"]) == 2
    env = {**os.environ, "TF_CONFIG": json.dumps(
        {"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "chief", "index": 0}})}
    node = subprocess.run([sys.executable, "-m", "steadyrank.cli", "cluster-node"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert node.returncode == 2 and "runs a 'ps' or 'worker' task" in node.stderr


@pytest.mark.slow
def test_parameter_server_cluster_shards_every_large_table(tmp_path):
    data = synth.generate(synth.SynthSpec(users=10_000, items=1_000_000, rows=1_000_000,
                                          seed=2), tmp_path / "data")
    base = tmp_path / "models"
    command = [sys.executable, "-m", "steadyrank.cli", "cluster", "--ps", "2", "--workers",
               "2", "--log-dir", str(tmp_path), "--", "train", "--config",
               str(REPO / "configs" / "smelu.toml"), "--export-dir", str(base / "ml"),
               "--checkpoint-dir", str(tmp_path / "ckpt"),
               "--set", "data.dataset=synthetic", "--set", f"data.data_dir={data}",
               "--set", "train.epochs=2", "--set", "train.batch_size=4096",
               "--set", "model.embedding_dim=8", "--set", "model.deep_layers=[16]",
               "--set", "model.min_id_count=1"]  # every one of the 10^6 ids gets its row
    done = subprocess.run(command, capture_output=True, text=True, timeout=1500, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    model = reader.load(base / "ml")
    manifest = model.manifest
    assert manifest["distribution"]["strategy"] == "parameter-server"
    shards = manifest["distribution"]["shards"]["item_id"]
    total = len(model.item_ids) + 1  # one out-of-vocabulary row
    assert len(model.item_ids) > 100_000  # the items of 10^6 seen in the training rows
    assert sorted(s["device"].split("/device")[0] for s in shards) == [
        "/job:ps/replica:0/task:0", "/job:ps/replica:0/task:1"]
    assert sum(s["rows"] for s in shards) == total
    assert all(0 < s["rows"] < total for s in shards)  # no parameter server holds all of it
    # Every table over 256 KiB (8 float32 a row here) is split; the small ones are whole.
    for name, parts in manifest["distribution"]["shards"].items():
        rows = sum(s["rows"] for s in parts)
        assert len(parts) == (2 if rows * 8 * 4 > 256 << 10 else 1), (name, rows)
    # The training loss on a fixed sample of training rows falls, epoch after epoch.
    losses = [h["sample_loss"] for h in manifest["training"]["history"]]
    assert len(losses) == 3 and losses[2] < losses[1] < losses[0]
    thread = ServerThread(ServerConfig(model_base_path=base, port=0, metrics_port=-1,
                                       host="127.0.0.1"))
    srv = thread.start()
    try:
        with client.channel(f"127.0.0.1:{srv.port}") as chan:
            answer = ranking_pb2_grpc.RankingServiceStub(chan).Rank(
                client.rank_request("ml", 1, 5,
                                    [int(i) for i in model.item_ids[:50]]), timeout=60)
        assert len(answer.items) == 5
    finally:
        thread.stop(grace=1)


def test_movielens_model_trained_on_a_cluster_exports_every_signature(tiny_data, tmp_path):
    """Lookup tables of user features and a 1-PS, 1-worker cluster: the export is local."""
    base = tmp_path / "models"
    command = [sys.executable, "-m", "steadyrank.cli", "cluster", "--ps", "1", "--workers",
               "1", "--", "train", "--config", str(REPO / "configs" / "smelu.toml"),
               "--export-dir", str(base / "ml"), "--checkpoint-dir", str(tmp_path / "ckpt"),
               *data_overrides(tiny_data), "--set", "train.epochs=1",
               "--set", "model.deep_layers=[16]", "--set", "train.batch_size=1024"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    model = reader.load(base / "ml")
    assert model.manifest["distribution"]["strategy"] == "parameter-server"
    assert model.manifest["distribution"]["shards"]["item_id"][0]["device"].startswith(
        "/job:ps/replica:0/task:0")
    signatures = model.module.signatures
    assert {"serving_default", "rank", "rank_with_features", "catalog", "users"} <= set(
        signatures)
    scores = signatures["rank_with_features"](
        user_id=tf.constant(999_999, tf.int64), item_ids=tf.constant([1, 2, 3], tf.int64),
        gender=tf.constant("F"), occupation=tf.constant("writer"),
        age=tf.constant(30, tf.int64), zip=tf.constant("94110"))["scores"].numpy()
    assert scores.shape == (3,) and all(abs(s) < 10 for s in scores)


@pytest.mark.slow
def test_compare_runs_its_replicas_on_a_parameter_server_cluster(tmp_path):
    """`steadyrank cluster -- compare`: every replica trains under the strategy, and the
    report's PD is what the replicas' exports give."""
    data = synth.generate(synth.SynthSpec(users=200, items=300, rows=12_000, seed=5),
                          tmp_path / "data")
    out, work = tmp_path / "report", tmp_path / "work"
    command = [sys.executable, "-m", "steadyrank.cli", "cluster", "--ps", "1", "--workers",
               "1", "--", "compare", "--config", str(REPO / "configs" / "smelu.toml"),
               "--variants", "relu,smelu", "--pairs", "1", "--users", "50", "--out", str(out),
               "--work-dir", str(work), "--set", "data.dataset=synthetic",
               "--set", f"data.data_dir={data}", "--set", "train.epochs=1",
               "--set", "train.batch_size=512", "--set", "model.embedding_dim=4",
               "--set", "model.deep_layers=[8]"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["train"]["strategy"] == "parameter-server"
    assert "train.strategy=parameter-server" in report["command"]
    overrides = [part for flag, part in zip(command, command[1:], strict=False)
                 if flag == "--set"]
    ev = eval_columns(prepare_data(load(REPO / "configs" / "smelu.toml", overrides)))
    for variant in ("relu", "smelu"):
        a = reader.load(work / "all" / variant / "pair0-a")
        b = reader.load(work / "all" / variant / "pair0-b")
        assert a.manifest["distribution"]["strategy"] == "parameter-server"
        assert b.manifest["distribution"]["strategy"] == "parameter-server"
        expected = metrics.relative_pd(a.score(ev.inputs), b.score(ev.inputs))
        assert 0 < expected < 1  # two different replicas
        assert report["variants"][variant]["relative_pd"]["values"][0] == pytest.approx(
            expected, rel=1e-9)


def test_a_cluster_trains_criteo_shaped_data(tmp_path):
    from steadyrank.model.data import criteo_synth

    data = criteo_synth.generate(criteo_synth.CriteoSpec(rows=6000, shard_rows=3000,
                                                         format="criteo", seed=4),
                                 tmp_path / "criteo", log=lambda _: None)
    config = tmp_path / "criteo.toml"
    # The tables train with row-sparse Adagrad on the parameter servers, averaged lazily.
    config.write_text(f'[data]\nformat = "criteo"\ntrain = ["{data}/day-*.tsv"]\n'
                      '[model]\nembedding_dim = 8\ndeep_layers = [16]\n'
                      '[train]\nepochs = 1\nbatch_size = 512\nweight_averaging = "polyak:0.5"\n'
                      '[train.embeddings]\noptimizer = "adagrad"\nlearning_rate = 0.05\n')
    command = [sys.executable, "-m", "steadyrank.cli", "cluster", "--ps", "2", "--workers",
               "1", "--log-dir", str(tmp_path), "--", "train", "--config", str(config),
               "--export-dir", str(tmp_path / "models" / "criteo"), "--checkpoint-dir",
               str(tmp_path / "ckpt")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    model = reader.load(tmp_path / "models" / "criteo")
    assert model.manifest["distribution"]["strategy"] == "parameter-server"
    shards = model.manifest["distribution"]["shards"]
    assert set(shards) == {f"C{i}" for i in range(1, 27)}
    assert not model.ranks and 0.5 < model.manifest["metrics"]["auc"] <= 1
    assert model.manifest["techniques"]["embedding_optimizer"]["optimizer"] == "adagrad"
    assert "weights replaced by their average (polyak:0.5)" in done.stderr
