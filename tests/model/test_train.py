"""Training: determinism by seed, resume after a kill, the ensemble, export and reload."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from steadyrank.cli.main import main as cli_main
from steadyrank.model import config as cfg
from steadyrank.model.artifact import layout, reader, writer
from steadyrank.model.artifact.reader import score_in_batches
from steadyrank.model.data.splits import prepare_data
from steadyrank.model.measures.accuracy import predict
from steadyrank.model.training import inputs, trainer
from steadyrank.model.training.inputs import make_input
from steadyrank.model.training.trainer import TrainError, member_seeds, train, train_member
from steadyrank.model.training.workflow import serving_module, train_and_export
from tests.conftest import REPO, eval_inputs, run_python, small_config


@pytest.fixture(scope="module")
def splits(tiny_data):
    return prepare_data(small_config(tiny_data))


def _predict(models, splits):
    rows = {k: tf.constant(v) for k, v in eval_inputs(splits).items()}
    return np.mean([m(rows).numpy() for m in models], axis=0)


def _member(config, splits, seed, folder=None):
    data = make_input(splits, config.train.batch_size, config.train.shuffle)
    return train_member(config, data, seed, folder, log=lambda m: None)


def test_same_seed_same_model_other_seed_differs(tiny_data, splits):
    config = small_config(tiny_data)
    a = _predict(train(config, 7, splits, log=lambda m: None).members, splits)
    b = _predict(train(config, 7, splits, log=lambda m: None).members, splits)
    c = _predict(train(config, 8, splits, log=lambda m: None).members, splits)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).mean() > 1e-3


def test_ensemble_is_the_mean_of_its_seeded_members(tiny_data, splits, tmp_path):
    config = small_config(tiny_data, train={"ensemble": 2})
    seeds = member_seeds(3, 2)
    assert len(set(seeds)) == 2 and member_seeds(3, 1) == [3]
    path = train_and_export(config, 3, tmp_path / "ens", tmp_path / "ckpt", prepared=splits,
                            log=lambda m: None)
    loaded = reader.load(path)
    assert loaded.manifest["member_seeds"] == seeds
    rows = eval_inputs(splits, 500)
    singles = [_member(config, splits, s)[0] for s in seeds]
    expected = np.mean([m({k: tf.constant(v) for k, v in rows.items()}).numpy().ravel()
                        for m in singles], axis=0)
    np.testing.assert_allclose(loaded.score(rows), expected, rtol=1e-6)
    single_params = loaded.manifest["parameters"] / 2
    assert single_params == writer.parameter_count(singles[:1])
    assert not (tmp_path / "ckpt").exists()  # removed after the export


def test_export_layout_manifest_and_signatures_in_a_fresh_process(tiny_data, splits, tmp_path):
    config = small_config(tiny_data)
    base = tmp_path / "models" / "ml"
    first = train_and_export(config, 1, base, tmp_path / "c", prepared=splits, log=print)
    second = train_and_export(config, 1, base, tmp_path / "c", prepared=splits, log=print)
    assert [first.name, second.name] == ["1", "2"] and layout.versions(base) == [1, 2]
    assert not [p for p in base.iterdir() if p.name.startswith(".")]  # no temp left
    manifest = json.loads((second / "manifest.json").read_text())
    assert manifest["seed"] == 1 and manifest["version"] == 2
    assert manifest["data"]["checksum"] == splits.checksum
    assert manifest["config"] == config.to_dict()
    loaded = reader.load(second)
    served, labels = predict(loaded.score, splits.eval_batches())
    rmse = np.sqrt(np.mean((served.astype(np.float64) - labels) ** 2))
    assert manifest["metrics"]["rmse"] == pytest.approx(rmse, rel=1e-6)  # of what is served
    assert manifest["signatures"] == sorted(layout.SIGNATURES)
    # The manifest records the schema: each feature, its table size, the statistics.
    schema = manifest["schema"]
    assert [f["name"] for f in schema["features"]] == [f.name for f in splits.schema.features]
    item = next(f for f in schema["features"] if f["name"] == "item_id")
    assert item["role"] == "item_id" and item["distinct_values"] == len(loaded.item_ids)
    assert schema["label"] == {"column": "rating", "task": "rating"}
    rows = eval_inputs(splits, 64)
    np.save(tmp_path / "rows.npy", np.stack([rows["user_id"], rows["item_id"]]))
    user = int(rows["user_id"][0])
    expected_rank = loaded.rank({"user_id": user, "item_ids": rows["item_id"]})
    facts = splits.stats.facts["user_id"]
    at = int(np.searchsorted(facts.ids, user))
    stored = {k: getattr(v[at], "item", lambda x=v[at]: x)()  # the user's stored facts
              for k, v in facts.values.items()}
    result = run_python(f"""
        import numpy as np, tensorflow as tf
        from steadyrank.model.artifact import reader
        m = reader.load({str(base)!r})  # the latest version
        users, items = np.load({str(tmp_path / 'rows.npy')!r})
        np.save({str(tmp_path / 'score.npy')!r}, m.score({{"user_id": users, "item_id": items}}))
        np.save({str(tmp_path / 'rank.npy')!r},
                m.rank({{"user_id": {user}, "item_ids": items}}))
        f = m.module.signatures["rank_with_features"]
        s = f(user_id=tf.constant({user}, tf.int64), item_ids=tf.constant(items),
              gender=tf.constant({stored["gender"]!r}),
              occupation=tf.constant({stored["occupation"]!r}),
              zip=tf.constant({stored["zip"]!r}),
              age=tf.constant({int(stored["age"])}, tf.int64))["scores"].numpy()
        np.save({str(tmp_path / 'feat.npy')!r}, s)
        print(m.path.name, len(m.item_ids))
    """)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["2", str(len(splits.stats.facts["item_id"].ids))]
    fn = loaded.module.signatures["serving_default"]
    in_process = fn(user_id=tf.constant(rows["user_id"]),
                    item_id=tf.constant(rows["item_id"]))["score"].numpy()
    np.testing.assert_allclose(np.load(tmp_path / "score.npy"), in_process, rtol=1e-6)
    np.testing.assert_allclose(np.load(tmp_path / "rank.npy"), expected_rank, rtol=1e-6)
    # The user's own facts given: the same scores as the stored ones.
    np.testing.assert_allclose(np.load(tmp_path / "feat.npy"), expected_rank, rtol=1e-6)
    # The signature's user features are the schema's user facts.
    _, inputs = loaded.module.signatures["rank_with_features"].structured_input_signature
    assert set(inputs) - {"user_id", "item_ids"} == {
        f.name for f in splits.schema.with_role("user")}


def test_the_examples_signature_scores_serialized_examples(tiny_data, splits, tmp_path):
    path = train_and_export(small_config(tiny_data), 1, tmp_path / "m", tmp_path / "c",
                            prepared=splits, log=lambda m: None)
    loaded = reader.load(path)
    rows = eval_inputs(splits, 20)
    examples = [tf.train.Example(features=tf.train.Features(feature={
        name: tf.train.Feature(int64_list=tf.train.Int64List(value=[int(rows[name][i])]))
        for name in ("user_id", "item_id")})).SerializeToString() for i in range(20)]
    got = loaded.module.signatures["examples"](examples=tf.constant(examples))["score"]
    np.testing.assert_allclose(got.numpy(), loaded.score(rows), rtol=1e-6)
    missing = tf.train.Example().SerializeToString()
    with pytest.raises(tf.errors.InvalidArgumentError, match="(user|item)_id.*is required"):
        loaded.module.signatures["examples"](examples=tf.constant([missing]))


def test_failed_export_leaves_no_version(tiny_data, splits, tmp_path, monkeypatch):
    config = small_config(tiny_data)
    result = train(config, 1, splits, log=lambda m: None)
    module = serving_module(result.members, splits)

    def broken_save(*args, **kwargs):
        (tmp_path / "saving").touch()
        raise OSError("disk full")

    monkeypatch.setattr(tf.saved_model, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        writer.export(module, tmp_path / "m", {})
    assert (tmp_path / "saving").exists() and list((tmp_path / "m").iterdir()) == []
    with pytest.raises(reader.ExportError, match="no model version"):
        reader.load(tmp_path / "m")


def test_binary_task_exports_probabilities(tiny_data, splits, tmp_path):
    config = small_config(tiny_data, model={"task": "binary"})
    prepared = prepare_data(config)
    path = train_and_export(config, 1, tmp_path / "b", tmp_path / "c", prepared=prepared,
                            log=lambda m: None)
    manifest = reader.load(path).manifest
    assert 0.6 < manifest["metrics"]["auc"] <= 1.0 and manifest["metrics"]["log_loss"] > 0
    assert 0.5 < manifest["metrics"]["calibration"] < 2.0
    scores = reader.load(path).score(eval_inputs(prepared, 200))
    assert ((scores > 0) & (scores < 1)).all()


def test_checkpoints_of_another_run_are_refused(tiny_data, splits, tmp_path):
    config = small_config(tiny_data)
    _member(config, splits, 1, tmp_path / "ck")
    with pytest.raises(TrainError, match="different run.*seed"):
        _member(config, splits, 2, tmp_path / "ck")


def _cli(args, cwd):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.Popen([sys.executable, "-m", "steadyrank.cli", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_killed_run_resumes_and_matches_an_uninterrupted_run(tiny_data, splits, tmp_path):
    config_file = tmp_path / "c.toml"
    config_file.write_text(
        f'[data]\ndataset = "synthetic"\ndata_dir = "{tiny_data}"\n[model]\nembedding_dim = 8\n'
        'deep_layers = [16, 8]\n[train]\nepochs = 3\nbatch_size = 1024\n')
    args = ["train", "--config", str(config_file), "--seed", "5", "--export-dir",
            str(tmp_path / "models" / "r"), "--checkpoint-dir", str(tmp_path / "ck")]
    proc = _cli(args, tmp_path)
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if "epoch 1/3" in line and "checkpoint" in line:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=120)
    assert proc.returncode == -signal.SIGKILL, "".join(seen)
    assert not (tmp_path / "models" / "r").exists() or not layout.versions(
        tmp_path / "models" / "r")
    resumed = _cli(args, tmp_path)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err[-3000:]
    assert "resuming after epoch 1" in err and "epoch 1/3" not in err
    assert "epoch 2/3" in err and "epoch 3/3" in err
    path = reader.load(out.strip().splitlines()[-1])
    # The same run without interruption, in this process.
    straight = train(cfg.load(config_file), 5, splits, log=lambda m: None)
    module = serving_module(straight.members, splits)
    rows = eval_inputs(splits, 1000)
    np.testing.assert_array_equal(path.score(rows), score_in_batches(module.serve, rows))


def test_cli_train_errors_name_the_problem(tmp_path, capsys):
    assert cli_main(["train", "--config", str(tmp_path / "none.toml"), "--export-dir",
                     str(tmp_path / "m")]) == 1
    assert "none.toml: no such config file" in capsys.readouterr().err
    good = REPO / "configs" / "smelu.toml"
    assert cli_main(["train", "--config", str(good), "--export-dir", str(tmp_path / "m"),
                     "--set", "train.epochs=0"]) == 1
    assert "train.epochs must be >= 1, got 0" in capsys.readouterr().err
    assert cli_main(["train", "--config", str(good), "--export-dir", str(tmp_path / "m"),
                     "--set", "epochs"]) == 1
    assert "must look like section.key=value" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


class _Crash(Exception):
    pass


@pytest.mark.parametrize("load, shuffle", [("memory", "full"), ("stream", "window:700"),
                                           ("stream", "time")])
def test_a_run_killed_inside_an_epoch_resumes_there_with_the_same_weights(
        tiny_data, tmp_path, monkeypatch, load, shuffle):
    config = small_config(tiny_data, data={"load": load},
                          train={"epochs": 2, "batch_size": 500, "shuffle": shuffle,
                                 "checkpoint_steps": 10})
    prepared = prepare_data(config)
    straight = train(config, 3, prepared, log=lambda m: None).members[0]
    saves = []
    original = trainer._Checkpoints.on_train_batch_end

    def crash_after_a_save(self, batch, logs=None):
        before = self.consumed.numpy()
        original(self, batch, logs)
        if self.consumed.numpy() != before:
            saves.append(int(self.consumed.numpy()))
            if len(saves) == 5:  # the second epoch's first checkpoint, 5,000 rows in
                raise _Crash()

    monkeypatch.setattr(trainer._Checkpoints, "on_train_batch_end", crash_after_a_save)
    with pytest.raises(_Crash):
        train(config, 3, prepared, tmp_path / "ck", log=lambda m: None)
    assert saves == [5000, 10000, 15000, 20000, 5000]  # 24,000 rows an epoch
    monkeypatch.setattr(trainer._Checkpoints, "on_train_batch_end", original)
    lines = []
    resumed = train(config, 3, prepared, tmp_path / "ck", log=lines.append).members[0]
    assert any("resuming after epoch 1, 5,000 rows into epoch 2" in line for line in lines)
    assert resumed.optimizer.iterations.numpy() == straight.optimizer.iterations.numpy()
    for a, b in zip(straight.trainable_variables, resumed.trainable_variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_streamed_rows_come_in_the_same_order_on_every_run(tiny_data):
    config = small_config(tiny_data, data={"load": "stream"},
                          train={"shuffle": "window:500", "batch_size": 700})
    prepared = prepare_data(config)
    data = make_input(prepared, 700, "window:500", log=lambda m: None)
    assert not data.in_memory
    key = "sr_rows.item_id"  # looked up by the pipeline
    first = [b[key].numpy() for b in data.epoch(4, 1)]
    again = [b[key].numpy() for b in make_input(
        prepared, 700, "window:500", log=lambda m: None).epoch(4, 1)]
    assert len(first) == data.steps and sum(len(b) for b in first) == data.rows
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    other = np.concatenate([b[key].numpy() for b in data.epoch(5, 1)])
    assert not np.array_equal(np.concatenate(first), other)  # another order seed


def test_full_shuffling_of_a_stream_is_refused_with_what_to_do(tiny_data, monkeypatch):
    prepared = prepare_data(small_config(tiny_data, data={"load": "stream"}))
    with pytest.raises(ValueError, match="train.shuffle = \"full\" needs every train row in "
                                         "memory.*window:N"):
        make_input(prepared, 256, "full")
    small_budget = prepare_data(small_config(tiny_data, data={"memory_budget_mb": 2}))
    assert make_input(small_budget, 256, "full", log=lambda m: None).in_memory  # ~1.3 MB
    monkeypatch.setattr(inputs, "_estimate_bytes", lambda prepared, found: 3 << 20)  # 3 MB
    with pytest.raises(ValueError, match="need more than data.memory_budget_mb = 2"):
        make_input(small_budget, 256, "full")
    lines = []
    assert not make_input(small_budget, 256, "time", log=lines.append).in_memory
    assert "streaming 24,000 train rows" in lines[0]
