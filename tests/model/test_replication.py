"""A judged result against its replication on a fresh draw: the PD ratio of each run with
its interval, the verdict either way, and what is not a replication."""

import json

import numpy as np
import pytest

from steadyrank.cli.main import main as cli_main
from steadyrank.model.evaluation import replication, report

WINNER = "smelu:0.5+ema:0.995"


def _summary(values):
    return {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)),
            "values": list(values)}


def _variant(pd, loss, auc):
    n = len(pd)
    return {"log_loss": _summary([loss + 0.001 * (i - n / 2) for i in range(n)]),
            "auc": _summary([auc + 0.001 * (i % 3) for i in range(n)]),
            "relative_pd": _summary(pd), "absolute_pd": _summary([p / 10 for p in pd]),
            "calibration": _summary([1.0] * n), "train_seconds": _summary([10.0] * n),
            "train_examples_per_second": _summary([1000.0] * n),
            "parameters": _summary([10.0] * n), "request_seconds": _summary([0.001] * n)}


def _result(winner_pd, checksum, train):
    relu = [0.10, 0.12, 0.09, 0.11, 0.10, 0.13, 0.08, 0.11]
    table = {"relu": _variant(relu, 0.5160, 0.697), WINNER: _variant(winner_pd, 0.5158, 0.694)}
    return {"variants": table, "sources": {"all": table, "order": table}, "pairs": 8,
            "split": "eval", "eval_rows": 100, "data_checksum": checksum,
            "config": {"data": {"format": "parquet", "train": [train]},
                       "train": {"learning_rate": 0.002}},
            "vary": ["all", "order"], "ranking": "no user_id and item_id"}


JUDGED_PD = [0.07, 0.09, 0.06, 0.08, 0.08, 0.10, 0.06, 0.08]  # sums 0.62 to relu's 0.84


def _judgment():
    return {**_result(JUDGED_PD, "a" * 64, "data/judge/*.parquet"), "winner": WINNER}


def test_a_ratio_inside_the_judgments_interval_replicates():
    again = _result([p * 1.05 for p in JUDGED_PD], "b" * 64, "data/replicate/*.parquet")
    found = replication.check(again, _judgment())
    judged, repeated = found["judgment"], found["replication"]
    assert judged["relative_pd_ratio"]["value"] == pytest.approx(sum(JUDGED_PD) / 0.84)
    assert repeated["relative_pd_ratio"]["value"] == pytest.approx(1.05 * sum(JUDGED_PD) / 0.84)
    low, high = judged["relative_pd_ratio"]["interval"]
    assert low < judged["relative_pd_ratio"]["value"] < high
    assert found["replicated"] and judged["pairs"] == repeated["pairs"] == 8
    assert judged["loss_difference"]["metric"] == "log_loss"
    assert judged["loss_difference"]["value"] == pytest.approx(-0.0002)
    assert judged["auc_difference"]["value"] == pytest.approx(0.003)


def test_a_ratio_outside_the_judgments_interval_does_not_replicate(tmp_path):
    judgment, again = tmp_path / "judgment", tmp_path / "replication"
    report.write(_judgment(), judgment, "steadyrank compare ...", winner=WINNER)
    report.write(_result([p * 1.6 for p in JUDGED_PD], "b" * 64, "data/replicate/*.parquet"),
                 again, "steadyrank compare ...", winner=WINNER)
    assert cli_main(["report", str(again), "--replicates", str(judgment)]) == 0
    found = json.loads((again / "replication.json").read_text())
    assert not found["replicated"]
    assert found["replication"]["relative_pd_ratio"]["value"] > \
        found["judgment"]["relative_pd_ratio"]["interval"][1]
    text = (again / "replication.md").read_text()
    assert "**Did not replicate**" in text and f"`{WINNER}` against `relu`" in text
    assert "| pairs | 8 | 8 |" in text


@pytest.mark.parametrize(("change", "message"), [
    (lambda j, r: j.pop("winner"), "names no winner"),
    (lambda j, r: r.update(winner="relu"), "replication names winner 'relu'"),
    (lambda j, r: r["sources"]["all"].pop(WINNER), "replication lacks variant"),
    (lambda j, r: r.update(sources={"order": r["sources"]["order"]}), "no --vary all table"),
    (lambda j, r: r["config"]["train"].update(learning_rate=0.004), "config differs"),
    (lambda j, r: r.update(data_checksum=j["data_checksum"]), "needs a fresh draw"),
    (lambda j, r: r.update(split="validation"), "measured the validation split"),
])
def test_what_is_not_a_replication_is_refused(change, message):
    judgment = _judgment()
    again = {**_result(JUDGED_PD, "b" * 64, "data/replicate/*.parquet"), "winner": WINNER}
    change(judgment, again)
    with pytest.raises(ValueError, match=message):
        replication.check(again, judgment)


def test_the_cli_names_a_missing_judgment(tmp_path, capsys):
    report.write(_result(JUDGED_PD, "b" * 64, "x"), tmp_path / "r", "steadyrank compare ...")
    assert cli_main(["report", str(tmp_path / "r"), "--replicates",
                     str(tmp_path / "nowhere")]) != 0
    assert "nowhere" in capsys.readouterr().err
    assert not (tmp_path / "r" / "replication.md").exists()
