"""The study's winner rule on a tuning comparison: each branch, the tie, single models
only, the files written, and bad input."""

import json

import pytest

from steadyrank.cli.main import main as cli_main
from steadyrank.model.evaluation import tuning

RELU = (0.5000, 0.100, 60.0)  # (log loss, relative PD, training seconds)


def entry(loss, pd, seconds):
    """A variant's report entry (per-pair values whose means are the given ones)."""
    return {"log_loss": {"values": [loss - 0.0001, loss + 0.0001]},
            "relative_pd": {"values": [pd * 0.9, pd * 1.1]},
            "train_seconds": {"values": [seconds, seconds]}}


def variants(**others):
    out = {"relu": entry(*RELU)}
    out.update({name.replace("_", ":").replace("P", "+"): entry(*v)
                for name, v in others.items()})
    return out


def pick(found, **rule):
    rule = tuning.Rule(**rule)
    winner, why = tuning.pick(tuning.candidates(found, {}, rule), rule)
    return winner.variant, why


def test_the_lowest_pd_qualified_candidate_wins():
    found = variants(smelu_1=(0.5002, 0.070, 61.0),  # qualifies
                     smelu_2=(0.5001, 0.080, 62.0),  # qualifies, steadier one wins
                     smelu_4=(0.5010, 0.050, 60.0),  # too inaccurate
                     smelu_1Pcodistill_1=(0.4990, 0.040, 160.0))  # too slow (2.67x)
    name, why = pick(found)
    assert name == "smelu:1" and "lowest relative PD among" in why


def test_a_tie_within_a_hundredth_of_relus_pd_goes_to_the_cheaper():
    found = variants(smelu_1=(0.5000, 0.0700, 90.0), smelu_2=(0.5000, 0.0705, 61.0))
    name, why = pick(found)
    assert name == "smelu:2" and "2 tie" in why
    name, _ = pick(found, tie=0.001)  # 0.005x apart: no tie at a tighter bound
    assert name == "smelu:1"


def test_none_qualifies_the_lowest_pd_within_the_fallback_is_named_against_the_goal():
    found = variants(smelu_1=(0.5010, 0.060, 60.0), smelu_2=(0.5015, 0.050, 200.0),
                     smelu_4=(0.5100, 0.010, 60.0))
    name, why = pick(found)
    assert name == "smelu:2"
    assert "against the accuracy goal and the training-time bound" in why


def test_none_within_the_fallback_the_most_accurate_is_named():
    found = variants(smelu_1=(0.5040, 0.060, 60.0), smelu_2=(0.5030, 0.090, 60.0))
    assert pick(found) == ("smelu:2", "no candidate is within 0.002 loss of relu's: the "
                           "most accurate candidate")


def test_ensembles_are_not_candidates_and_a_base_is_needed():
    found = {"relu": entry(*RELU), "relu-ensemble:4": entry(0.49, 0.01, 200.0),
             "smelu:2": entry(0.5001, 0.09, 60.0)}
    rule = tuning.Rule()
    assert [c.variant for c in tuning.candidates(
        found, {"relu-ensemble:4": False}, rule)] == ["smelu:2"]
    with pytest.raises(ValueError, match="no 'relu' variant"):
        tuning.candidates({"smelu:2": entry(0.5, 0.1, 60.0)}, {}, rule)
    with pytest.raises(ValueError, match="no single-model candidate"):
        tuning.candidates({"relu": entry(*RELU)}, {}, rule)


def test_the_report_cli_writes_the_winner_beside_the_report(tmp_path, capsys):
    found = variants(smelu_1=(0.5002, 0.070, 61.0), smelu_2=(0.5001, 0.080, 62.0))
    (tmp_path / "report.json").write_text(json.dumps(
        {"sources": {"all": found, "order": variants()}, "variants": found,
         "single_model": {n: True for n in found}}))
    assert tuning.write(tmp_path).name == "winner.md"
    record = json.loads((tmp_path / "winner.json").read_text())
    assert record["winner"] == "smelu:1" and record["rule"]["slack"] == 0.0003
    assert abs(record["candidates"][0]["pd_ratio"] - 0.7) < 1e-9
    assert "**`smelu:1`**" in (tmp_path / "winner.md").read_text()
    with pytest.raises(ValueError, match="no --vary async table"):
        tuning.write(tmp_path, tuning.Rule(source="async"))
    assert cli_main(["report", str(tmp_path / "missing"), "--pick-winner"]) != 0
    assert "missing" in capsys.readouterr().err
