"""steadyrank compare: variants, replica pairs, metrics from the exports, the report files."""

import json

import pytest

from steadyrank.cli.main import main as cli_main
from steadyrank.model import compare, export, metrics, report, synth
from steadyrank.model.config import from_dict


@pytest.mark.parametrize("text, message", [
    ("relu,tanh", "bad variant 'tanh'"),
    ("relu:0.5", "only smelu takes a beta"),
    ("smelu:0", "only smelu takes a beta > 0"),
    ("relu-ensemble:1", "ensemble size must be a whole number >= 2"),
    ("relu-ensemble", "ensemble size"),
    ("relu,relu", "repeat a name"),
])
def test_bad_variants_are_named(text, message):
    with pytest.raises(ValueError, match=message):
        compare.parse_variants(text)


def test_variants_apply_to_the_base_config():
    base = from_dict({"model": {"activation": "smelu", "smelu_beta": 2.0}})
    relu, smelu, default_beta, ens = compare.parse_variants(
        "relu,smelu:0.5,smelu,relu-ensemble:4")
    assert relu.apply(base).model.activation == "relu"
    assert smelu.apply(base).model.smelu_beta == 0.5
    assert default_beta.apply(base).model.smelu_beta == 2.0
    applied = ens.apply(base)
    assert applied.train.ensemble == 4 and applied.model.activation == "relu"
    assert ens.slug == "relu-ensemble-4"


@pytest.fixture(scope="module")
def synth_config(tmp_path_factory):
    folder = synth.generate(synth.SynthSpec(users=200, items=300, rows=12_000, seed=1),
                            tmp_path_factory.mktemp("cmp") / "data")
    return folder, {"data": {"dataset": "synthetic", "data_dir": str(folder)},
                    "model": {"embedding_dim": 4, "deep_layers": [8]},
                    "train": {"epochs": 1, "batch_size": 512}}


def test_compare_cli_writes_a_report_from_the_exports(synth_config, tmp_path, capsys):
    folder, raw = synth_config
    config_file = tmp_path / "base.toml"
    config_file.write_text(
        f'[data]\ndataset = "synthetic"\ndata_dir = "{folder}"\n[model]\nembedding_dim = 4\n'
        'deep_layers = [8]\n[train]\nepochs = 1\nbatch_size = 512\n')
    notes = tmp_path / "notes.md"
    notes.write_text("## Tried\nnothing yet\n")
    args = ["compare", "--config", str(config_file), "--variants",
            "relu,smelu:1,relu-ensemble:2", "--pairs", "2", "--out", str(tmp_path / "rep"),
            "--work-dir", str(tmp_path / "work"), "--users", "50", "--notes", str(notes)]
    assert cli_main(args) == 0
    out = tmp_path / "rep"
    result = json.loads((out / "report.json").read_text())
    assert result["command"] == "steadyrank " + " ".join(args)
    assert list(result["variants"]) == ["relu", "smelu:1", "relu-ensemble:2"]
    assert (out / "pd_vs_loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "report.md").read_text()
    assert result["command"] in md and "## Tried" in md and "| relu-ensemble:2 |" in md
    relu = result["variants"]["relu"]
    for key in ("rmse", "relative_pd", "absolute_pd", "top1_swap_rate", "top10_swap_rate",
                "kendall_tau", "train_seconds", "parameters", "request_seconds"):
        assert len(relu[key]["values"]) == 2, key
    ens = result["variants"]["relu-ensemble:2"]
    assert ens["parameters"]["mean"] == 2 * relu["parameters"]["mean"]
    # Pair 0's relative PD is what the two cached exports give on the eval split.
    a = export.load(tmp_path / "work" / "relu" / "pair0-a")
    b = export.load(tmp_path / "work" / "relu" / "pair0-b")
    assert (a.manifest["seed"], b.manifest["seed"]) == (1, 2)
    from steadyrank.model.train import prepare_data
    ev = prepare_data(from_dict(raw)).eval
    expected = metrics.relative_pd(a.score(ev.user_id, ev.item_id),
                                   b.score(ev.user_id, ev.item_id))
    assert relu["relative_pd"]["values"][0] == pytest.approx(expected, rel=1e-9)
    assert 0 < expected < 1 and 0 <= relu["top10_swap_rate"]["mean"] <= 1
    # A second run reuses the exports instead of training again.
    capsys.readouterr()
    assert cli_main(args) == 0
    err = capsys.readouterr().err
    assert "reusing" in err and "training 1 model" not in err


def test_goals_pick_the_most_reproducible_accurate_smelu():
    def variant(loss, pd, swap, params=100, req=1.0, eps=1000.0):
        s = lambda x: {"mean": x, "std": 0.0, "values": [x]}  # noqa: E731
        return {"rmse": s(loss), "relative_pd": s(pd), "top10_swap_rate": s(swap),
                "parameters": s(params), "request_seconds": s(req),
                "train_examples_per_second": s(eps)}
    result = {"variants": {
        "relu": variant(0.90, 0.10, 0.20),
        "smelu:0.5": variant(0.902, 0.05, 0.08),
        "smelu:4": variant(0.95, 0.01, 0.01),  # most reproducible but too inaccurate
        "relu-ensemble:4": variant(0.89, 0.05, 0.10, params=400, req=4.0)}}
    goals = {g["goal"].split(" ", 1)[1]: g for g in report.goals(result)}
    assert all(g["selected_smelu"] == "smelu:0.5" for g in goals.values())
    assert goals["relative PD <= 0.6x relu"]["value"] == pytest.approx(0.5)
    assert goals["top-10 swap rate <= 0.5x relu"]["met"]
    assert goals["rmse <= relu rmse + 0.005"]["value"] == pytest.approx(0.002)
    assert goals["parameters <= 1/4 of relu-ensemble:4's"]["value"] == pytest.approx(0.25)
    assert goals["top-10 swap rate <= relu-ensemble:4's"]["met"]
    result["variants"]["smelu:0.5"]["relative_pd"]["mean"] = 0.09
    goals = {g["goal"].split(" ", 1)[1]: g for g in report.goals(result)}
    assert not goals["relative PD <= 0.6x relu"]["met"]


def test_compare_cli_rejects_bad_arguments(tmp_path, capsys):
    base = tmp_path / "c.toml"
    base.write_text("[train]\nepochs = 1\n")
    assert cli_main(["compare", "--config", str(base), "--variants", "relu,tanh", "--out",
                     str(tmp_path / "o")]) == 2
    assert "bad variant 'tanh'" in capsys.readouterr().err
    assert cli_main(["compare", "--config", str(base), "--variants", "relu", "--pairs", "0",
                     "--out", str(tmp_path / "o")]) == 2
    assert "--pairs must be >= 1, got 0" in capsys.readouterr().err
    assert cli_main(["compare", "--config", str(base), "--variants", "relu", "--users", "0",
                     "--out", str(tmp_path / "o")]) == 2
    assert "--users must be >= 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
