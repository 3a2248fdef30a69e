"""Where replicas disagree: the export's rarity signature against a numpy count of the
training values, PD by slice and by part of the model, and `steadyrank explain-pd`."""

import json

import numpy as np
import pytest

from steadyrank.cli.main import main as cli_main
from steadyrank.model import config as cfg
from steadyrank.model.artifact import reader
from steadyrank.model.artifact.layout import RARITY_BUCKETS, rarity_bucket
from steadyrank.model.data.batches import concat
from steadyrank.model.data.splits import prepare_data
from steadyrank.model.evaluation import breakdown
from steadyrank.model.measures import metrics
from steadyrank.model.training.workflow import train_and_export
from tests.conftest import small_config

NAMES = [name for name, _ in RARITY_BUCKETS]


@pytest.fixture(scope="module")
def replicas(tiny_data, tmp_path_factory):
    """Two replicas (different init and order) of the tiny dataset, and its eval rows."""
    work = tmp_path_factory.mktemp("explain")
    config = small_config(tiny_data, model={"min_id_count": 3})  # rare ids share the OOV row
    prepared = prepare_data(config)
    paths = [train_and_export(config, seed, work / f"m{seed}", work / f"ck{seed}",
                              prepared=prepared, log=lambda m: None) for seed in (1, 2)]
    rows = concat(list(prepared.eval_batches()))
    return config, prepared, paths, rows


def _numpy_rarest(prepared, config, inputs):
    """Each row's rarest value's training count, from the statistics, in numpy: 0 for a
    value without its own row (unseen, or under the id threshold)."""
    rarest = np.full(len(inputs["user_id"]), np.iinfo(np.int64).max)
    for f in prepared.schema.features:
        if f.is_fact or not f.embedded:
            continue
        vocab = prepared.stats.vocabularies[f.table]
        threshold = max(f.min_count, config.model.min_id_count if f.role in (
            "user_id", "item_id") else 1)
        known = dict(zip(vocab.values.tolist(), vocab.counts.tolist(), strict=True))
        keys = inputs[f.name]
        if f.boundaries:
            keys = np.searchsorted(np.asarray(f.boundaries), keys, side="right")
        elif f.truncate:
            keys = np.array([k[:f.truncate] for k in keys.tolist()], object)
        counts = np.array([known.get(k, 0) for k in keys.reshape(-1).tolist()]).reshape(
            keys.shape)
        counts = np.where(counts >= threshold, counts, 0)
        if f.kind == "multi_hot":
            pad = "" if f.dtype == "string" else -1
            counts = np.where(inputs[f.name] == pad, np.iinfo(np.int64).max, counts).min(-1)
        rarest = np.minimum(rarest, counts)
    return rarest


def test_the_rarity_signature_counts_each_rows_rarest_value(replicas):
    config, prepared, paths, rows = replicas
    model = reader.load(paths[0])
    got = breakdown.rarest_counts(model, rows.inputs, batch=1000)
    np.testing.assert_array_equal(got, _numpy_rarest(prepared, config, rows.inputs))
    buckets = np.bincount(rarity_bucket(got), minlength=len(NAMES))
    assert buckets[0] > 0 and buckets[-1] > 0  # out-of-vocabulary and common rows both
    assert "rarity" in model.manifest["signatures"]


def test_rarity_of_hashed_features_counts_the_buckets_training_rows(tmp_path):
    from steadyrank.model.data import criteo_synth
    from steadyrank.model.data.presets import criteo_schema
    from steadyrank.model.network.features import hash_rows

    data = criteo_synth.generate(criteo_synth.CriteoSpec(rows=3000, shard_rows=3000, seed=4),
                                 tmp_path / "criteo", log=lambda _: None)
    features = [{**f.to_dict(), **({"hash_buckets": 7} if f.name == "C1" else {})}
                for f in criteo_schema().features]  # C1 hashed, the rest vocabularies
    config = cfg.from_dict({
        "data": {"format": "parquet", "train": [f"{data}/*.parquet"], "time_column": "ts"},
        "label": {"column": "label", "task": "binary"}, "features": features,
        "model": {"embedding_dim": 4, "deep_layers": [8]},
        "train": {"epochs": 1, "batch_size": 256}})
    prepared = prepare_data(config)
    path = train_and_export(config, 1, tmp_path / "m", tmp_path / "ck", prepared=prepared,
                            log=lambda m: None)
    train = concat(list(prepared.train_batches())).inputs
    buckets = np.bincount(hash_rows(train["C1"], 7), minlength=7)
    model = reader.load(path)
    counts = model.module.row_counts["C1"].numpy()
    np.testing.assert_array_equal(counts, buckets)
    assert counts.sum() == prepared.train.rows
    vocab = prepared.stats.vocabularies["C2"]
    np.testing.assert_array_equal(model.module.row_counts["C2"].numpy(),
                                  np.concatenate([[0], vocab.counts]))


def test_slices_share_the_pd_and_match_a_direct_computation(replicas):
    config, prepared, paths, rows = replicas
    a, b = reader.load(paths[0]), reader.load(paths[1])
    result = breakdown.explain(a, b, rows.inputs)
    pa, pb = a.score(rows.inputs), b.score(rows.inputs)
    per = metrics.relative_pd_per_example(pa, pb)
    assert result["relative_pd"] == pytest.approx(per.mean())
    labels = rarity_bucket(_numpy_rarest(prepared, config, rows.inputs))
    for i, s in enumerate(result["by_rarity"]):
        inside = labels == i
        assert s["slice"] == NAMES[i] and s["rows"] == inside.sum()
        assert s["pd_share"] == pytest.approx(per[inside].sum() / per.sum())
        if inside.any():
            assert s["relative_pd"] == pytest.approx(per[inside].mean())
    for key in ("by_rarity", "by_score_decile"):
        assert sum(s["row_share"] for s in result[key]) == pytest.approx(1.0)
        assert sum(s["pd_share"] for s in result[key]) == pytest.approx(1.0)
    decile_rows = [s["rows"] for s in result["by_score_decile"]]
    n = len(per)
    assert all(abs(r - n / 10) <= n / 100 for r in decile_rows)  # deciles of the mean score
    mean = (pa.astype(np.float64) + pb) / 2
    top = result["by_score_decile"][-1]["rows"]
    assert np.sort(mean)[-top:].min() >= np.sort(mean)[:n - top].max()
    flat = breakdown.flat(result)
    assert flat["pd_share_oov"] == result["by_rarity"][0]["pd_share"]
    assert set(flat) >= {"rows_d1", "pd_share_d10", "pd_tables_only", "pd_network_only"}


def _assigned(target, source, part):
    """``target`` with ``source``'s variables of ``part``, assigned here (the reference)."""
    for mine, theirs in zip(target.module.members, source.module.members, strict=True):
        for x, y in zip(breakdown.part_variables(mine, part),
                        breakdown.part_variables(theirs, part), strict=True):
            x.assign(y)
    return target


def test_swapping_parts_moves_b_towards_a(replicas):
    _, _, paths, rows = replicas
    a = reader.load(paths[0])
    both = reader.load(paths[1])
    with breakdown.part_swapped(both, a, "tables"), breakdown.part_swapped(both, a, "network"):
        np.testing.assert_allclose(both.score(rows.inputs), a.score(rows.inputs), rtol=1e-6)
    b = reader.load(paths[1])
    own = b.score(rows.inputs)
    result = breakdown.explain(a, b, rows.inputs)
    np.testing.assert_array_equal(b.score(rows.inputs), own)  # B's own parts put back
    tables_swapped = _assigned(reader.load(paths[1]), a, "tables")
    assert result["by_component"]["network"]["relative_pd"] == pytest.approx(
        metrics.relative_pd(a.score(rows.inputs), tables_swapped.score(rows.inputs)))
    network_swapped = _assigned(reader.load(paths[1]), a, "network")
    assert result["by_component"]["tables"]["relative_pd"] == pytest.approx(
        metrics.relative_pd(a.score(rows.inputs), network_swapped.score(rows.inputs)))
    # An error inside a swap puts B's own values back too.
    with pytest.raises(RuntimeError, match="inside"), breakdown.part_swapped(b, a, "tables"):
        assert not np.array_equal(b.score(rows.inputs), own)
        raise RuntimeError("inside")
    np.testing.assert_array_equal(b.score(rows.inputs), own)
    assert result["by_component"]["tables"]["how"] == "B with A's network, against A"
    with pytest.raises(ValueError, match="unknown part 'weights'"):
        breakdown.part_variables(a.module.members[0], "weights")


def test_parts_of_models_that_are_not_replicas_are_refused(replicas, tiny_data, tmp_path):
    config, prepared, paths, _ = replicas
    other = train_and_export(small_config(tiny_data, model={"deep_layers": [4]}), 1,
                             tmp_path / "other", tmp_path / "ck", log=lambda m: None)
    with pytest.raises(reader.ExportError, match="their network differ in shape"), \
            breakdown.part_swapped(reader.load(other), reader.load(paths[0]), "network"):
        pass


def test_explain_pd_cli_prints_and_writes_the_breakdown(replicas, tmp_path, capsys):
    config, _, paths, _ = replicas
    config_file = tmp_path / "c.toml"
    raw = config.to_dict()
    config_file.write_text(
        f'[data]\ndataset = "synthetic"\ndata_dir = "{raw["data"]["data_dir"]}"\n'
        '[model]\nembedding_dim = 8\ndeep_layers = [16, 8]\nmin_id_count = 3\n')
    out = tmp_path / "b.json"
    assert cli_main(["explain-pd", str(paths[0]), str(paths[1]), "--config", str(config_file),
                     "--rows", "1500", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "rarest value's training count" in text and "score decile" in text
    assert "only the tables differ" in text
    written = json.loads(out.read_text())
    assert written["rows"] == 1500 and written["a"] == str(paths[0])
    assert cli_main(["explain-pd", str(paths[0]), str(tmp_path / "nothing"), "--config",
                     str(config_file)]) == 1
    assert "no model version" in capsys.readouterr().err
    assert cli_main(["explain-pd", str(paths[0]), str(paths[1]), "--config",
                     str(config_file), "--rows", "0"]) == 2
    assert "--rows must be >= 1, got 0" in capsys.readouterr().err
