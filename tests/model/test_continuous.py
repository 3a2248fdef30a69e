"""Continuous training: rounds on arriving shards, tables that grow with surviving rows kept
exactly, and a trainer killed anywhere neither skips nor repeats a shard."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from steadyrank.cli.main import main as cli_main
from steadyrank.model import config as cfg
from steadyrank.model.artifact import reader
from steadyrank.model.artifact.gate import read_follow_status
from steadyrank.model.artifact.layout import versions
from steadyrank.model.data.stats_store import load_stats, save_stats
from steadyrank.model.publishing import continuous, replicas
from steadyrank.model.publishing.continuous import FollowState, follow, state_folder

ROWS = 1500


def shard(folder, index, items):
    """Shard ``index`` of a click log: users u0..u59, the given items, a device, a planted
    taste; its ts continue the previous shard's."""
    rng = np.random.default_rng(index)
    users = rng.integers(0, 60, ROWS)
    chosen = rng.choice(items, ROWS)
    taste = np.sin(users * 1.3) * np.cos(chosen * 0.7)
    clicked = (rng.random(ROWS) < 1 / (1 + np.exp(-2 * taste))).astype(np.int64)
    table = pa.table({"ts": np.arange(index * ROWS, (index + 1) * ROWS, dtype=np.int64),
                      "user": [f"u{u}" for u in users], "item": chosen,
                      "device": rng.choice(["ios", "web"], ROWS),
                      "price": np.round(rng.lognormal(2, 1, ROWS), 2), "clicked": clicked})
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"shard-{index:03d}.parquet"
    pq.write_table(table, path.with_suffix(".tmp"))
    path.with_suffix(".tmp").rename(path)  # a writer puts whole shards in place
    return path


def config(folder, **train):
    return cfg.from_dict({
        "data": {"format": "parquet", "train": [f"{folder}/shard-*.parquet"],
                 "time_column": "ts", "follow": True},
        "label": {"column": "clicked", "task": "binary"},
        "features": [{"name": "user", "kind": "categorical", "role": "user_id",
                      "dtype": "string"},
                     {"name": "item", "kind": "categorical", "role": "item_id",
                      "dtype": "int64"},
                     {"name": "device", "kind": "categorical", "dtype": "string"},
                     {"name": "price", "kind": "numeric", "transform": "log1p"}],
        "model": {"embedding_dim": 4, "deep_layers": [8], "activation": "relu"},
        "train": {"batch_size": 256, "embeddings": {"optimizer": "adagrad",
                                                    "learning_rate": 0.05}, **train}})


def quiet(_):
    pass


def vocabulary(conf, shards):
    """The item table's vocabulary (row order) after rounds on ``shards``, from statistics
    carried as the trainer carries them."""
    from dataclasses import replace

    from steadyrank.model.data.splits import prepare_data
    from steadyrank.model.data.stats import merge_stats
    from steadyrank.model.network.features import table_specs

    stats = None
    for path in shards:
        one = replace(conf, data=replace(conf.data, train=(str(path),), eval=(str(path),)))
        prepared = prepare_data(one)
        stats = merge_stats(stats, prepared.stats) if stats else prepared.stats
    return table_specs(prepared.schema, stats, conf.model)["item"].vocabulary


def rows_by_value(path, vocab):
    """{item id: its embedding row} of an export's replica A (row 0: out of vocabulary)."""
    member = reader.load(path).module.members[0]
    (table,) = [v for v in member.encoder.variables if "table_item" in v.name]
    rows = table.numpy()
    assert len(rows) == len(vocab) + 1
    return {int(v): rows[i + 1] for i, v in enumerate(vocab)}


def test_rounds_follow_the_shards_and_tables_grow_keeping_every_surviving_row(tmp_path):
    data, base = tmp_path / "stream", tmp_path / "models"
    shard(data, 0, np.arange(100, 140))
    conf = config(data)
    first = follow(conf, base, "clicks", users=20, log=quiet, max_rounds=1,
                   should_stop=lambda s: True)
    assert [r.version for r in first] == [1] and first[0].published
    state = FollowState.read(state_folder(base, "clicks"))
    assert state.round == 1 and [s.path for s in state.consumed] == [str(data /
                                                                        "shard-000.parquet")]
    v1 = reader.load(base / "clicks" / "1")
    assert v1.manifest.extra["follow"]["shards"] == [str(data / "shard-000.parquet")]
    # No new shard: nothing to train.
    assert follow(conf, base, "clicks", log=quiet, should_stop=lambda s: True) == []
    # Shard 1 brings items 140-159 and drops 100-119.
    shard(data, 1, np.arange(120, 160))
    second = follow(conf, base, "clicks", users=20, log=quiet, max_rounds=1,
                    should_stop=lambda s: True)
    assert [r.version for r in second] == [2]
    v2 = reader.load(base / "clicks" / "2")
    record = v2.manifest.extra["follow"]
    assert record["round"] == 2 and record["shards"] == [str(data / "shard-001.parquet")]
    assert 0 <= record["progressive_log_loss"] < 1.5 and 0 <= record["oov_share"] <= 1
    assert record["oov_share"] > 0.3  # items 140-159 are new to version 1
    # The vocabulary grew by value: every old item is still there, and the new ones.
    assert set(int(i) for i in v1.item_ids) < set(int(i) for i in v2.item_ids)
    assert set(range(100, 160)) <= {int(i) for i in v2.item_ids}
    # Items 100-119 had no row in round 2's data: with row-sparse Adagrad their rows are
    # exactly version 1's, moved to their new places by value.
    first_shard, second_shard = data / "shard-000.parquet", data / "shard-001.parquet"
    old = rows_by_value(base / "clicks" / "1", vocabulary(conf, [first_shard]))
    new = rows_by_value(base / "clicks" / "2", vocabulary(conf, [first_shard, second_shard]))
    for item in range(100, 120):
        np.testing.assert_array_equal(new[item], old[item])
    assert any(np.abs(new[i] - old[i]).max() > 0 for i in range(120, 140))  # trained again
    state = FollowState.read(state_folder(base, "clicks"))
    assert state.round == 2 and len(state.consumed) == 2 and len(state.rounds) == 2
    stats = load_stats(state_folder(base, "clicks") / state.stats)
    assert stats.rows == 2 * ROWS  # both shards counted


def slots_by_value(base, round_number, vocab, slot="accumulator", replica="clicks"):
    """{item id: its optimizer slot row} saved after ``round_number``, and the step count."""
    path = (state_folder(base, "clicks") / f"stats-{round_number}" / continuous.SLOTS /
            replica / "member-0.npz")
    with np.load(path) as saved:
        (key,) = [k for k in saved.files if k.endswith(f":item:{slot}")]
        rows, steps = saved[key], int(saved["steps"])
    assert len(rows) == len(vocab) + 1
    return {int(v): rows[i + 1] for i, v in enumerate(vocab)}, steps


def test_optimizer_slots_follow_their_rows_across_rounds(tmp_path):
    data, base = tmp_path / "stream", tmp_path / "models"
    first_shard = shard(data, 0, np.arange(100, 140))
    conf = config(data)
    lines = []
    follow(conf, base, "clicks", users=20, log=lines.append, max_rounds=1,
           should_stop=lambda s: True)
    old, steps1 = slots_by_value(base, 1, vocabulary(conf, [first_shard]))
    assert steps1 > 0 and all(old[i].min() > 0.1 for i in range(100, 140))  # Adagrad's
    saved = state_folder(base, "clicks") / "stats-1" / continuous.SLOTS / "clicks"
    with np.load(saved / "member-0.npz") as arrays:  # the tower's Adam moments too
        tower = [k for k in arrays.files if k.startswith("tower:")]
        assert tower and all(np.abs(arrays[k]).max() > 0 for k in tower)
        tables = [k for k in arrays.files if k.endswith(":accumulator")]
        assert len(tables) == 3  # user, item, device
    # Items 100-119 leave in shard 1 (140-159 arrive).
    second_shard = shard(data, 1, np.arange(120, 160))
    follow(conf, base, "clicks", users=20, log=lines.append, max_rounds=1,
           should_stop=lambda s: True)
    restored = [line for line in lines if "optimizer slot(s) of the tables and tower from" in line]
    assert len(restored) == 2  # A and B
    assert f"warm start: {len(tables) + len(tower)} optimizer slot(s)" in restored[0]
    assert not (state_folder(base, "clicks") / "stats-1").exists()  # gone with its stats
    new, steps2 = slots_by_value(base, 2, vocabulary(conf, [first_shard, second_shard]))
    assert steps2 == 2 * steps1  # the step count carries on (equal shards)
    for item in range(100, 120):  # untouched in round 2: round 1's slots, moved by value
        np.testing.assert_array_equal(new[item], old[item])
    for item in range(120, 140):  # trained again: Adagrad's accumulator only grows
        assert (new[item] >= old[item]).all() and (new[item] > old[item]).any()
    assert all(new[i].min() >= 0.1 for i in range(140, 160))  # new rows from the initial
    # A config that changes the tables' optimizer: the slots start afresh, the round runs.
    shard(data, 2, np.arange(120, 160))
    changed = config(data, embeddings={"optimizer": "lazy_adam", "learning_rate": 0.01})
    rounds = follow(changed, base, "clicks", users=20, log=lines.append, max_rounds=1,
                    should_stop=lambda s: True)
    assert [r.version for r in rounds] == [3]
    assert any("slots start afresh" in line and "do not match" in line for line in lines)
    _, steps3 = slots_by_value(base, 3, vocabulary(conf, [first_shard, second_shard]),
                               slot="m")
    assert steps3 == steps1  # Lazy Adam counted from its own first step


def test_a_trainer_killed_mid_round_trains_the_same_shards_again(tmp_path, monkeypatch):
    data, base = tmp_path / "stream", tmp_path / "models"
    shard(data, 0, np.arange(100, 130))
    conf = config(data)
    original = replicas.train_and_export
    calls = []

    def dies_on_b(*args, **kwargs):
        calls.append(args[2])
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed while training replica B
        return original(*args, **kwargs)

    monkeypatch.setattr(replicas, "train_and_export", dies_on_b)
    with pytest.raises(KeyboardInterrupt):
        follow(conf, base, "clicks", log=quiet, max_rounds=1)
    monkeypatch.setattr(replicas, "train_and_export", original)
    assert not versions(base / "clicks") and FollowState.read(
        state_folder(base, "clicks")).round == 0
    rounds = follow(conf, base, "clicks", users=20, log=quiet, max_rounds=1)
    assert [r.version for r in rounds] == [1]
    state = FollowState.read(state_folder(base, "clicks"))
    assert [s.path for s in state.consumed] == [str(data / "shard-000.parquet")]


def test_a_round_published_but_not_recorded_is_recovered_not_repeated(tmp_path, monkeypatch):
    data, base = tmp_path / "stream", tmp_path / "models"
    shard(data, 0, np.arange(100, 130))
    conf = config(data)
    original = FollowState.write

    def dies_after_the_publish(self, folder):
        if self.round == 1:
            raise KeyboardInterrupt  # killed between the publish and the state write
        original(self, folder)

    monkeypatch.setattr(FollowState, "write", dies_after_the_publish)
    with pytest.raises(KeyboardInterrupt):
        follow(conf, base, "clicks", log=quiet, max_rounds=1)
    monkeypatch.setattr(FollowState, "write", original)
    assert versions(base / "clicks") == [1]
    lines = []
    assert follow(conf, base, "clicks", log=lines.append, should_stop=lambda s: True) == []
    assert versions(base / "clicks") == [1]  # not trained again
    state = FollowState.read(state_folder(base, "clicks"))
    assert state.round == 1 and state.rounds[-1]["recovered"]
    assert "1 shard(s) consumed in 1 round(s)" in lines[0]


def test_a_held_back_round_keeps_its_shards_pending_until_more_arrive(tmp_path):
    data, base = tmp_path / "stream", tmp_path / "models"
    shard(data, 0, np.arange(100, 130))
    conf = config(data)
    follow(conf, base, "clicks", users=20, log=quiet, max_rounds=1)
    shard(data, 1, np.arange(100, 130))
    gate = replicas.Gate(max_pd=1e-9)  # any change is over it
    held = follow(conf, base, "clicks", users=20, log=quiet, max_rounds=1, gate=gate)
    assert [r.published for r in held] == [False]
    status = read_follow_status(base, "clicks")  # what the server exports
    assert status["round"] == 1 and status["published"] is False
    assert status["pending_shards"] == 1 and status["waiting_since"] > 0
    state = FollowState.read(state_folder(base, "clicks"))
    assert state.held == [str(data / "shard-001.parquet")] and len(state.consumed) == 1
    # The same pending shards are not retried until another one arrives.
    assert follow(conf, base, "clicks", log=quiet, gate=gate,
                  should_stop=lambda s: True) == []
    shard(data, 2, np.arange(100, 130))
    again = follow(conf, base, "clicks", users=20, log=quiet, max_rounds=1)
    assert again[0].published
    status = read_follow_status(base, "clicks")
    assert status["round"] == 2 and status["published"] is True
    assert status["pending_shards"] == 0 and status["waiting_since"] == 0
    assert status["rows"] == 2 * ROWS and 0 <= status["progressive_log_loss"] < 1.5
    record = reader.load(base / "clicks" / str(again[0].version)).manifest.extra["follow"]
    assert record["shards"] == [str(data / "shard-001.parquet"),
                                str(data / "shard-002.parquet")]


def test_statistics_round_trip_through_their_folder(tmp_path):
    from steadyrank.model.data.splits import prepare_data

    data = tmp_path / "stream"
    shard(data, 0, np.arange(100, 130))
    prepared = prepare_data(config(data))
    save_stats(prepared.stats, tmp_path / "stats")
    back = load_stats(tmp_path / "stats")
    assert back.rows == prepared.stats.rows
    for name, vocab in prepared.stats.vocabularies.items():
        np.testing.assert_array_equal(back.vocabularies[name].values, vocab.values)
        np.testing.assert_array_equal(back.vocabularies[name].counts, vocab.counts)
    assert back.numeric["price"].mean == pytest.approx(prepared.stats.numeric["price"].mean)


def _write_config(tmp_path, data):
    """The test's config as a TOML file with ``[data] follow = true``."""
    path = tmp_path / "clicks.toml"
    lines = [f'[data]\nformat = "parquet"\ntrain = ["{data}/shard-*.parquet"]\n'
             'time_column = "ts"\nfollow = true\n[label]\ncolumn = "clicked"\n'
             'task = "binary"\n']
    for f in config(data).features:
        entries = ", ".join(f"{k} = {v!r}".replace("'", '"') for k, v in f.to_dict().items())
        lines.append(f"[[features]]\n{entries.replace(', ', chr(10))}\n")
    lines.append('[model]\nembedding_dim = 4\ndeep_layers = [8]\n[train]\nbatch_size = 512\n')
    path.write_text("\n".join(lines))
    return path


def test_the_trainer_cli_follows(tmp_path):
    data, base = tmp_path / "stream", tmp_path / "models"
    shard(data, 0, np.arange(100, 130))
    path = _write_config(tmp_path, data)
    assert cli_main(["trainer", "--config", str(path), "--models", str(base), "--users",
                     "10", "--max-rounds", "1", "--poll-seconds", "0.1"]) == 0
    assert versions(base / "clicks") == [1] and versions(base / "clicks-b") == [1]
    assert continuous.FollowState.read(state_folder(base, "clicks")).round == 1


@pytest.mark.parametrize("flag, value", [("--max-rounds", "-1"), ("--poll-seconds", "0")])
def test_the_trainer_cli_names_a_bad_follow_setting(tmp_path, capsys, flag, value):
    data = tmp_path / "stream"
    shard(data, 0, np.arange(100, 130))
    args = ["trainer", "--config", str(_write_config(tmp_path, data)), "--models",
            str(tmp_path / "models"), "--follow", "--max-rounds", "1", "--poll-seconds", "1"]
    args[args.index(flag) + 1] = value
    try:
        code = cli_main(args)
    except SystemExit as exited:  # argparse refuses it
        code = exited.code
    assert code == 2
    assert flag in capsys.readouterr().err and not (tmp_path / "models").exists()
