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
from steadyrank.model.training.trainer import TrainError, member_seeds, train, train_member
from steadyrank.model.training.workflow import train_and_export
from tests.conftest import REPO, run_python, small_config


@pytest.fixture(scope="module")
def splits(tiny_data):
    return prepare_data(small_config(tiny_data))


def _predict(models, splits):
    pairs = {"user_id": tf.constant(splits.eval.user_id[:2000]),
             "item_id": tf.constant(splits.eval.item_id[:2000])}
    return np.mean([m(pairs).numpy() for m in models], axis=0)


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
    path = train_and_export(config, 3, tmp_path / "ens", tmp_path / "ckpt", splits=splits,
                            log=lambda m: None)
    loaded = reader.load(path)
    assert loaded.manifest["member_seeds"] == seeds
    users, items = splits.eval.user_id[:500], splits.eval.item_id[:500]
    singles = [train_member(config, splits, s, None, log=lambda m: None)[0] for s in seeds]
    expected = np.mean([m({"user_id": tf.constant(users), "item_id": tf.constant(items)})
                        .numpy().ravel() for m in singles], axis=0)
    np.testing.assert_allclose(loaded.score(users, items), expected, rtol=1e-6)
    single_params = loaded.manifest["parameters"] / 2
    assert single_params == writer.parameter_count(singles[:1])
    assert not (tmp_path / "ckpt").exists()  # removed after the export


def test_export_layout_manifest_and_signatures_in_a_fresh_process(tiny_data, splits, tmp_path):
    config = small_config(tiny_data)
    base = tmp_path / "models" / "ml"
    first = train_and_export(config, 1, base, tmp_path / "c", splits=splits, log=print)
    second = train_and_export(config, 1, base, tmp_path / "c", splits=splits, log=print)
    assert [first.name, second.name] == ["1", "2"] and layout.versions(base) == [1, 2]
    assert not [p for p in base.iterdir() if p.name.startswith(".")]  # no temp left
    manifest = json.loads((second / "manifest.json").read_text())
    assert manifest["seed"] == 1 and manifest["version"] == 2
    assert manifest["data"]["checksum"] == splits.data.checksum
    assert manifest["config"] == config.to_dict()
    served = reader.load(second).score(splits.eval.user_id, splits.eval.item_id)
    rmse = np.sqrt(np.mean((served.astype(np.float64) - splits.eval.rating) ** 2))
    assert manifest["metrics"]["rmse"] == pytest.approx(rmse, rel=1e-6)  # of what is served
    assert manifest["signatures"] == ["catalog", "rank", "rank_with_features",
                                      "serving_default", "users"]
    users, items = splits.eval.user_id[:64], splits.eval.item_id[:64]
    np.save(tmp_path / "pairs.npy", np.stack([users, items]))
    module = reader.load(second).module
    expected_rank = reader.load(second).rank(int(users[0]), items)
    stored = {k: v[0].item() for k, v in splits.data.users.items()}  # user 1's features
    assert splits.data.user_ids[0] == 1
    result = run_python(f"""
        import numpy as np, tensorflow as tf
        from steadyrank.model.artifact import reader
        m = reader.load({str(base)!r})  # the latest version
        users, items = np.load({str(tmp_path / 'pairs.npy')!r})
        np.save({str(tmp_path / 'score.npy')!r}, m.score(users, items))
        np.save({str(tmp_path / 'rank.npy')!r}, m.rank(int(users[0]), items))
        f = m.module.signatures["rank_with_features"]
        s = f(user_id=tf.constant(1, tf.int64), item_ids=tf.constant(items),
              gender=tf.constant({stored["gender"]!r}),
              occupation=tf.constant({stored["occupation"]!r}),
              zip=tf.constant({stored["zip"]!r}),
              age=tf.constant({stored["age"]}, tf.int64))["scores"].numpy()
        np.save({str(tmp_path / 'feat.npy')!r}, s)
        print(m.path.name, len(m.item_ids))
    """)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["2", str(len(splits.tables.item_ids))]
    fn = module.signatures["serving_default"]
    in_process = fn(user_id=tf.constant(users), item_id=tf.constant(items))["score"].numpy()
    np.testing.assert_allclose(np.load(tmp_path / "score.npy"), in_process, rtol=1e-6)
    np.testing.assert_allclose(np.load(tmp_path / "rank.npy"), expected_rank, rtol=1e-6)
    # User 1's own features given: the same scores as the stored ones.
    by_id = reader.load(second).rank(1, items)
    np.testing.assert_allclose(np.load(tmp_path / "feat.npy"), by_id, rtol=1e-6)
    # The signature's user features are layout's table, names and dtypes (one owner).
    _, inputs = module.signatures["rank_with_features"].structured_input_signature
    assert {k: v.dtype.name for k, v in inputs.items() if k not in ("user_id", "item_ids")} \
        == layout.USER_FEATURES


def test_failed_export_leaves_no_version(tiny_data, splits, tmp_path, monkeypatch):
    config = small_config(tiny_data)
    result = train(config, 1, splits, log=lambda m: None)
    module = writer.ServingModule(result.members, splits.tables, "rating")

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
    path = train_and_export(config, 1, tmp_path / "b", tmp_path / "c", splits=splits,
                            log=lambda m: None)
    manifest = reader.load(path).manifest
    assert 0.6 < manifest["metrics"]["auc"] <= 1.0 and manifest["metrics"]["log_loss"] > 0
    module = reader.load(path).module
    scores = module.signatures["serving_default"](
        user_id=tf.constant(splits.eval.user_id[:200]),
        item_id=tf.constant(splits.eval.item_id[:200]))["score"].numpy()
    assert ((scores > 0) & (scores < 1)).all()


def test_checkpoints_of_another_run_are_refused(tiny_data, splits, tmp_path):
    config = small_config(tiny_data)
    train_member(config, splits, 1, tmp_path / "ck", log=lambda m: None)
    with pytest.raises(TrainError, match="different run.*seed"):
        train_member(config, splits, 2, tmp_path / "ck", log=lambda m: None)


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
    module = writer.ServingModule(straight.members, splits.tables, "rating")
    users, items = splits.eval.user_id[:1000], splits.eval.item_id[:1000]
    np.testing.assert_array_equal(path.score(users, items),
                                  score_in_batches(module.serve, users, items))


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
