"""Bootstrap intervals over pairs: known answers, seeds, and the pairs-for-width helper."""

import json

import numpy as np
import pytest

from steadyrank.model.evaluation import intervals


def test_the_mean_interval_of_normal_pairs_matches_the_textbook_width():
    """For many normal values the percentile bootstrap of the mean approaches
    mean ± 1.96 s / sqrt(n) (its resamples use the population sd, a factor sqrt((n-1)/n))."""
    values = np.random.default_rng(1).normal(10.0, 2.0, 400)
    low, high = intervals.mean_interval(values)
    half = 1.959964 * values.std(ddof=0) / np.sqrt(values.size)
    assert low == pytest.approx(values.mean() - half, abs=0.03)
    assert high == pytest.approx(values.mean() + half, abs=0.03)


def test_constant_pairs_give_a_point_and_a_ratio_of_constants_is_exact():
    assert intervals.mean_interval([0.3, 0.3, 0.3]) == (pytest.approx(0.3), pytest.approx(0.3))
    assert intervals.ratio_interval([1.0, 1.0], [4.0, 4.0]) == (pytest.approx(0.25),
                                                               pytest.approx(0.25))
    assert intervals.difference_interval([2.0], [0.5]) == (pytest.approx(1.5),
                                                           pytest.approx(1.5))


def test_two_point_pairs_enumerate_to_a_known_interval():
    """Values {0, 1} in 2 pairs: a resample's mean is 0, 0.5 or 1 with chance 1/4, 1/2, 1/4,
    so the 95% interval is [0, 1]; with 3 pairs of 0, 0, 1 the lowest mean (all 0) has
    chance 8/27 > 2.5%: the interval starts at 0."""
    assert intervals.mean_interval([0.0, 1.0]) == (0.0, 1.0)
    low, high = intervals.mean_interval([0.0, 0.0, 1.0])
    assert low == 0.0 and high == 1.0  # 1/27 > 2.5%: all-ones is in the upper tail


def test_intervals_are_seeded_and_cover_the_point_estimate():
    a, b = [0.10, 0.14, 0.12, 0.11], [0.30, 0.25, 0.28, 0.31]
    assert intervals.ratio_interval(a, b) == intervals.ratio_interval(a, b)
    assert intervals.ratio_interval(a, b, seed=1) != intervals.ratio_interval(a, b, seed=2)
    low, high = intervals.ratio_interval(a, b)
    assert low < np.mean(a) / np.mean(b) < high


def test_pairs_needed_follows_the_spread():
    values = [0.1, 0.2, 0.3]  # sd 0.1
    assert intervals.pairs_needed(values, 0.1) == 4  # (1.96 * 0.1 / 0.1)^2 = 3.84
    assert intervals.pairs_needed(values, 0.05) == 16
    assert intervals.pairs_needed([0.2], 0.05) is None
    assert intervals.ratio_pairs_needed([1.0, 1.2], [2.0, 2.0], 0.05) > 1


def test_no_pairs_is_an_error():
    with pytest.raises(ValueError, match="at least one pair"):
        intervals.mean_interval([])


def _summary(values):
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "values": values}


def _variant(pd, loss=0.5, seconds=10.0, auc=0.7):
    return {"log_loss": _summary([loss, loss + 0.001, loss - 0.001]),
            "auc": _summary([auc, auc + 0.002, auc - 0.002]),
            "calibration": _summary([1.0, 1.01, 0.99]),
            "relative_pd": _summary(pd), "absolute_pd": _summary([p / 10 for p in pd]),
            "train_seconds": _summary([seconds] * 3),
            "train_examples_per_second": _summary([1000.0] * 3),
            "parameters": _summary([10.0] * 3), "request_seconds": _summary([0.001] * 3)}


def _result():
    return {"variants": {"relu": _variant([0.10, 0.12, 0.11]),
                         "smelu:2+ema:0.9": _variant([0.05, 0.06, 0.04], loss=0.499),
                         "relu+ema:0.9": _variant([0.052, 0.058, 0.05])},
            "pairs": 3, "split": "eval", "eval_rows": 100, "data_checksum": "abc" * 5,
            "config": {"data": {"dataset": "synthetic"}}, "vary": ["all"],
            "ranking": "no user_id and item_id"}


def test_goals_carry_their_interval_and_whether_it_shows_the_claim():
    from steadyrank.model.evaluation import report

    goals = {g["goal"]: g for g in report.goals(_result(), winner="smelu:2+ema:0.9")}
    pd = goals["smelu:2+ema:0.9 relative PD <= 0.5x relu"]
    low, high = pd["interval"]
    assert pd["value"] == pytest.approx(0.05 / 0.11) and low < pd["value"] < high
    assert pd["met"] and pd["shown"] == (high <= 0.5)
    share = goals["SmeLU's own share: smelu:2+ema:0.9 relative PD < relu+ema:0.9's"]
    assert share["value"] == pytest.approx(0.05 / 0.0533333, rel=1e-4)
    assert share["interval"][0] < 1.0 < share["interval"][1]  # not shown with these pairs
    assert not share["shown"]
    auc = goals["smelu:2+ema:0.9 AUC >= relu's"]
    assert auc["value"] == pytest.approx(0.0) and auc["met"]


def test_a_report_renders_again_with_intervals_and_keeps_its_notes(tmp_path):
    from steadyrank.model.evaluation import report

    report.write(_result(), tmp_path, "steadyrank compare ...", "Notes: read me.",
                 winner="smelu:2+ema:0.9")
    first = (tmp_path / "report.md").read_text()
    assert "| goal | measured | 95% interval | bound | met | shown |" in first
    assert "| log_loss | AUC | calibration | relative PD |" in first
    assert "With 3 pairs a bootstrap interval is too narrow" in first
    # relu's relative PD: each extreme resample (all 0.10, all 0.12) has chance 1/27 > 2.5%
    assert "0.1100 ± 0.0082 [0.1000, 0.1200]" in first
    report.rerender(tmp_path)
    assert (tmp_path / "report.md").read_text() == first
    # A report.json written before the notes were kept in it: they come from report.md.
    record = json.loads((tmp_path / "report.json").read_text())
    del record["notes"]
    (tmp_path / "report.json").write_text(json.dumps(record))
    report.rerender(tmp_path)
    assert (tmp_path / "report.md").read_text() == first


def test_render_only_refuses_a_folder_without_a_report(tmp_path):
    from steadyrank.model.evaluation import report

    with pytest.raises(FileNotFoundError, match="no report.json"):
        report.rerender(tmp_path)


def test_report_names_a_winner_after_the_run_and_replaces_the_notes(tmp_path, capsys):
    """`steadyrank report --winner NAME --notes FILE`: the goals are judged for a variant a
    tuning rule named after its run, from the stored pairs; a name that is not one of the
    report's single models is refused, naming it, and nothing is rewritten."""
    from steadyrank.cli.main import main as cli_main
    from steadyrank.model.evaluation import report

    report.write(_result(), tmp_path, "steadyrank compare ...", "old notes")
    before = json.loads((tmp_path / "report.json").read_text())
    assert before["winner"] is None
    (tmp_path / "notes.md").write_text("## Notes\n\nNamed by the rule.\n")
    assert cli_main(["report", str(tmp_path), "--winner", "relu+ema:0.9",
                     "--notes", str(tmp_path / "notes.md")]) == 0
    after = json.loads((tmp_path / "report.json").read_text())
    assert after["winner"] == "relu+ema:0.9" and after["notes"].endswith("Named by the rule.\n")
    assert after["variants"] == before["variants"]  # the pairs are kept, not retrained
    assert any(g["goal"].startswith("relu+ema:0.9 relative PD <= 0.5x relu")
               for g in after["goals"]["all"])
    text = (tmp_path / "report.md").read_text()
    assert "Named by the rule." in text and "old notes" not in text
    assert cli_main(["report", str(tmp_path), "--winner", "gelu"]) == 2
    assert "--winner 'gelu' is not a single-model variant" in capsys.readouterr().err
    assert (tmp_path / "report.md").read_text() == text
