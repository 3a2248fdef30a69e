"""SmeLU's trade-off curve from a comparison's report.json: points with intervals, the
study's rule for the chosen beta (each branch), the files written, and bad input."""

import json

import numpy as np
import pytest

from steadyrank.cli.main import main as cli_main
from steadyrank.model.evaluation import curve


def metrics(pd, loss, pairs=4, seed=0):
    """A variant's report entry: per-pair values scattered around the given means."""
    rng = np.random.default_rng(seed)
    pds = (pd + rng.normal(0, pd / 20, pairs)).tolist()
    losses = (loss + rng.normal(0, 0.0001, pairs)).tolist()
    pds[-1] += pd * pairs - sum(pds)  # exact means
    losses[-1] += loss * pairs - sum(losses)
    return {"relative_pd": {"values": pds}, "log_loss": {"values": losses}}


def report(folder, means, others=("relu+ema:0.99",)):
    folder.mkdir(parents=True, exist_ok=True)
    variants = {name: metrics(pd, loss, seed=i) for i, (name, (pd, loss))
                in enumerate(means.items())}
    variants.update({name: metrics(0.05, 0.52) for name in others})  # not on the curve
    (folder / "report.json").write_text(json.dumps({
        "sources": {"all": variants, "order": variants}, "variants": variants}))
    return folder


def test_variant_names_parse_to_beta_and_layer_norm():
    assert curve.parse_variant("relu") == (0.0, True)
    assert curve.parse_variant("smelu:0.25") == (0.25, True)
    assert curve.parse_variant("smelu:2+nonorm") == (2.0, False)
    assert curve.parse_variant("relu+nonorm") == (0.0, False)
    for other in ("relu+ema:0.99", "smelu:2+ema:0.99", "gelu", "relu-ensemble:4"):
        assert curve.parse_variant(other) is None


def test_points_are_means_with_intervals_sorted_by_norm_then_beta(tmp_path):
    means = {"smelu:1": (0.06, 0.5160), "relu": (0.08, 0.5155),
             "smelu:1+nonorm": (0.07, 0.5170), "relu+nonorm": (0.09, 0.5165)}
    folder = report(tmp_path / "r", means)
    variants = json.loads((folder / "report.json").read_text())["variants"]
    found = curve.points(variants)
    assert [p.variant for p in found] == ["relu", "smelu:1", "relu+nonorm", "smelu:1+nonorm"]
    for p in found:
        pd, loss = means[p.variant]
        assert p.pd == pytest.approx(pd, rel=1e-12)
        assert p.log_loss == pytest.approx(loss, rel=1e-12)
        assert p.pd_interval[0] <= p.pd <= p.pd_interval[1] and p.pairs == 4


def point(variant, pd, loss):
    beta, norm = curve.parse_variant(variant)
    return curve.Point(variant, beta, norm, pd, (pd, pd), loss, (loss, loss), 4)


def test_the_chosen_beta_follows_each_branch_of_the_rule():
    relu = point("relu", 0.080, 0.5150)
    # Within 0.0005 of ReLU's log loss: the lowest PD among those (not the lowest overall).
    chosen, why = curve.chosen_beta([relu, point("smelu:0.5", 0.070, 0.5153),
                                     point("smelu:1", 0.060, 0.5154),
                                     point("smelu:4", 0.030, 0.5170)])
    assert chosen.variant == "smelu:1" and "lowest relative PD" in why
    # None within: the lowest log loss among points steadier than ReLU.
    chosen, why = curve.chosen_beta([relu, point("smelu:1", 0.060, 0.5160),
                                     point("smelu:2+nonorm", 0.050, 0.5158),
                                     point("smelu:4", 0.090, 0.5156)])
    assert chosen.variant == "smelu:2+nonorm" and "PD below" in why
    # None within and none steadier: the lowest PD, said so.
    chosen, why = curve.chosen_beta([relu, point("smelu:1", 0.085, 0.5160),
                                     point("smelu:4", 0.090, 0.5170)])
    assert chosen.variant == "smelu:1" and "none has PD below" in why
    with pytest.raises(ValueError, match="needs the 'relu' variant"):
        curve.chosen_beta([point("smelu:1", 0.06, 0.51)])
    with pytest.raises(ValueError, match="no smelu:BETA"):
        curve.chosen_beta([relu])


def test_write_draws_the_curve_and_names_the_chosen_beta(tmp_path):
    folder = report(tmp_path / "r", {"relu": (0.08, 0.5150), "smelu:0.5": (0.07, 0.5152),
                                     "smelu:2": (0.05, 0.5170),
                                     "relu+nonorm": (0.09, 0.5160)})
    text = curve.write(folder).read_text()
    assert "Chosen beta: **smelu:0.5**" in text and "## --vary order" in text
    assert (folder / "curve.png").stat().st_size > 10_000
    saved = json.loads((folder / "curve.json").read_text())
    assert saved["chosen"] == "smelu:0.5" and set(saved["curves"]) == {"all", "order"}
    assert len(saved["curves"]["all"]) == 4  # relu+ema:0.99 is not on the curve


def test_bad_folders_are_named(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="no report.json"):
        curve.write(tmp_path)
    folder = report(tmp_path / "none", {}, others=("gelu",))
    with pytest.raises(ValueError, match="no relu or smelu:BETA variants"):
        curve.write(folder)
    assert cli_main(["report", str(tmp_path / "missing"), "--curve"]) == 1
    assert "missing" in capsys.readouterr().err
