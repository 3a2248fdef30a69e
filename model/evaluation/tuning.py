"""A study's winner rule, applied to a tuning comparison (validation only), in code.

The rule (reports/criteo-synth-2/plan.md, step 3), under one ``--vary`` source (``all``):

1. among the single-model candidates whose mean loss is within ``slack`` of the base's
   (``relu``) and whose training time is at most ``time_bound`` times the base's, the lowest
   relative PD; candidates within ``tie`` x the base's PD of that lowest one tie, and a tie
   goes to the cheaper one (the shorter training);
2. if none qualifies, the lowest-PD candidate whose loss is within ``fallback_slack`` of the
   base's, named *against the accuracy goal* (and the training-time bound, if it misses it);
3. if none is within that either, the most accurate candidate.

:func:`write` names the winner from a comparison folder's ``report.json`` and writes
``winner.json`` and ``winner.md`` beside it (``steadyrank report FOLDER --pick-winner``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from steadyrank.core.fileio import atomic_write_json, atomic_write_text
from steadyrank.model.evaluation.report import read_result, table


@dataclass(frozen=True)
class Rule:
    """The rule's settings (the plan's numbers by default)."""

    base: str = "relu"
    source: str = "all"
    slack: float = 0.0003
    time_bound: float = 2.5
    tie: float = 0.01
    fallback_slack: float = 0.002


@dataclass(frozen=True)
class Candidate:
    """A candidate's means over pairs, and its ratios to the base's."""

    variant: str
    loss: float
    relative_pd: float
    train_seconds: float
    loss_over_base: float  # its loss minus the base's
    pd_ratio: float  # its relative PD over the base's
    time_ratio: float  # its training time over the base's


def _mean(metrics: dict[str, Any], key: str) -> float:
    summary = metrics[key]
    values = summary.get("values")
    return float(sum(values) / len(values)) if values else float(summary["mean"])


def candidates(variants: dict[str, Any], single: dict[str, bool], rule: Rule
               ) -> list[Candidate]:
    """The single-model variants other than the base, measured against it."""
    if rule.base not in variants:
        raise ValueError(f"the comparison has no {rule.base!r} variant to measure against")
    loss = "rmse" if "rmse" in variants[rule.base] else "log_loss"
    base = variants[rule.base]
    base_loss, base_pd = _mean(base, loss), _mean(base, "relative_pd")
    base_time = _mean(base, "train_seconds")
    out = []
    for name, metrics in variants.items():
        if name == rule.base or not single.get(name, "ensemble" not in name):
            continue
        lo, pd, t = (_mean(metrics, loss), _mean(metrics, "relative_pd"),
                     _mean(metrics, "train_seconds"))
        out.append(Candidate(name, lo, pd, t, lo - base_loss, pd / base_pd, t / base_time))
    if not out:
        raise ValueError("the comparison has no single-model candidate besides "
                         f"{rule.base!r}")
    return out


def pick(found: list[Candidate], rule: Rule) -> tuple[Candidate, str]:
    """The winner by ``rule`` among ``found``, and which branch of the rule named it."""
    qualified = [c for c in found
                 if c.loss_over_base <= rule.slack and c.time_ratio <= rule.time_bound]
    if qualified:
        best = min(c.pd_ratio for c in qualified)
        tied = [c for c in qualified if c.pd_ratio <= best + rule.tie]
        winner = min(tied, key=lambda c: (c.train_seconds, c.pd_ratio))
        why = (f"the lowest relative PD among the candidates within {rule.slack} loss of "
               f"{rule.base}'s and {rule.time_bound}x its training time")
        if len(tied) > 1:
            why += (f" ({len(tied)} tie within {rule.tie}x {rule.base}'s PD; the cheaper "
                    "one is named)")
        return winner, why
    within = [c for c in found if c.loss_over_base <= rule.fallback_slack]
    if within:
        winner = min(within, key=lambda c: c.pd_ratio)
        against = "the accuracy goal" + (" and the training-time bound"
                                         if winner.time_ratio > rule.time_bound else "")
        return winner, (f"no candidate is within {rule.slack} loss of {rule.base}'s and "
                        f"{rule.time_bound}x its training time: the lowest-PD candidate "
                        f"within {rule.fallback_slack} loss, named against {against}")
    winner = min(found, key=lambda c: c.loss)
    return winner, (f"no candidate is within {rule.fallback_slack} loss of {rule.base}'s: "
                    "the most accurate candidate")


def markdown(found: list[Candidate], winner: Candidate, why: str, rule: Rule) -> str:
    """The candidates against the base, and the winner."""
    lines = [f"# The winner by the tuning rule (`--vary {rule.source}`)", "",
             f"| candidate | loss - {rule.base}'s | relative PD / {rule.base}'s | "
             f"training time / {rule.base}'s |", "|---|---|---|---|"]
    for c in sorted(found, key=lambda c: c.pd_ratio):
        mark = " ★" if c is winner else ""
        lines.append(f"| `{c.variant}`{mark} | {c.loss_over_base:+.5f} | {c.pd_ratio:.3f}x | "
                     f"{c.time_ratio:.2f}x |")
    lines += ["", f"Winner: **`{winner.variant}`**: {why}.", ""]
    return "\n".join(lines)


def write(folder: str | Path, rule: Rule = Rule()) -> Path:
    """Names the winner of the comparison in ``folder`` (its report.json) by ``rule``;
    writes winner.json and winner.md beside it. Returns winner.md's path."""
    folder = Path(folder)
    result = read_result(folder, "pick a winner from")
    found = candidates(table(result, rule.source, str(folder)), result.get("single_model", {}),
                       rule)
    winner, why = pick(found, rule)
    atomic_write_json(folder / "winner.json", {
        "winner": winner.variant, "why": why, "rule": asdict(rule),
        "candidates": [asdict(c) for c in found]}, sort_keys=False)
    out = folder / "winner.md"
    atomic_write_text(out, markdown(found, winner, why, rule))
    return out
