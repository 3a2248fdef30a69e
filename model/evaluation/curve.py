"""SmeLU's trade-off curve: relative PD and log loss against beta (the paper's central
picture), from a comparison whose variants are ``relu`` and ``smelu:BETA``, each optionally
``+nonorm``, under one or more ``--vary`` sources.

ReLU is beta 0. For each (source, LayerNorm setting) a line: the mean over pairs with its
95% bootstrap interval (:mod:`.intervals`). The **chosen beta** follows the study's rule
(reports/criteo-synth-2/plan.md, step 2), under the first source (``--vary all``): among the
SmeLU points whose mean log loss is within ``tolerance`` of ``relu``'s, the one with the
lowest relative PD; if none is within it, the lowest log loss among points with PD below
ReLU's; if none is below, the lowest-PD point, and the rule says so.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from steadyrank.core.fileio import atomic_write_text
from steadyrank.model.evaluation.intervals import mean_interval
from steadyrank.model.evaluation.report import read_result, tables

BASE = "relu"
VARIANT = re.compile(r"^(relu|smelu:(?P<beta>[0-9.]+))(?P<nonorm>\+nonorm)?$")
TOLERANCE = 0.0005


@dataclass(frozen=True)
class Point:
    """One variant of the curve, under one source."""

    variant: str
    beta: float
    layer_norm: bool
    pd: float
    pd_interval: tuple[float, float]
    log_loss: float
    log_loss_interval: tuple[float, float]
    pairs: int


def parse_variant(name: str) -> tuple[float, bool] | None:
    """(beta, LayerNorm on) of a curve variant's name; None for any other variant."""
    found = VARIANT.match(name)
    if found is None:
        return None
    beta = float(found.group("beta")) if found.group("beta") else 0.0
    return beta, found.group("nonorm") is None


def points(variants: dict[str, Any]) -> list[Point]:
    """The curve's points of one source's variants (metric -> {"values": per pair}),
    sorted by LayerNorm setting, then beta."""
    out = []
    for name, metrics in variants.items():
        parsed = parse_variant(name)
        if parsed is None:
            continue
        pd, loss = metrics["relative_pd"]["values"], metrics["log_loss"]["values"]
        out.append(Point(name, parsed[0], parsed[1], sum(pd) / len(pd), mean_interval(pd),
                         sum(loss) / len(loss), mean_interval(loss), len(pd)))
    return sorted(out, key=lambda p: (not p.layer_norm, p.beta))


def chosen_beta(curve: list[Point], tolerance: float = TOLERANCE) -> tuple[Point, str]:
    """The chosen beta's point by the study's rule, and which branch of it chose."""
    base = next((p for p in curve if p.variant == BASE), None)
    if base is None:
        raise ValueError(f"the curve needs the {BASE!r} variant (beta 0, LayerNorm on)")
    smelu = [p for p in curve if p.beta > 0]
    if not smelu:
        raise ValueError("the curve has no smelu:BETA variant")
    close = [p for p in smelu if p.log_loss <= base.log_loss + tolerance]
    if close:
        return (min(close, key=lambda p: p.pd),
                f"the lowest relative PD among the points within {tolerance} log loss of "
                f"{BASE}'s")
    steadier = [p for p in smelu if p.pd < base.pd]
    if steadier:
        return (min(steadier, key=lambda p: p.log_loss),
                f"no point is within {tolerance} log loss of {BASE}'s: the lowest log loss "
                f"among the points with PD below {BASE}'s")
    return (min(smelu, key=lambda p: p.pd),
            f"no point is within {tolerance} log loss of {BASE}'s and none has PD below "
            f"{BASE}'s: the lowest-PD point")


def plot(curves: dict[str, list[Point]], path: Path, title: str = "") -> Path:
    """Relative PD (left) and log loss (right) against beta, one line per source and
    LayerNorm setting, with the 95% intervals as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8), dpi=120)
    for source, curve in curves.items():
        for norm in (True, False):
            line = [p for p in curve if p.layer_norm == norm]
            if not line:
                continue
            label = f"--vary {source}, {'LayerNorm' if norm else 'no LayerNorm'}"
            style = "-o" if norm else "--s"
            betas = [p.beta for p in line]
            for ax, value, interval in ((left, "pd", "pd_interval"),
                                        (right, "log_loss", "log_loss_interval")):
                means = [getattr(p, value) for p in line]
                low = [m - getattr(p, interval)[0] for m, p in zip(means, line, strict=True)]
                high = [getattr(p, interval)[1] - m for m, p in zip(means, line, strict=True)]
                ax.errorbar(betas, means, yerr=[low, high], fmt=style, capsize=3, label=label)
    left.set(xlabel="SmeLU beta (0: ReLU)", ylabel="relative PD between replicas")
    right.set(xlabel="SmeLU beta (0: ReLU)", ylabel="eval log loss")
    betas = sorted({p.beta for curve in curves.values() for p in curve})
    for ax in (left, right):
        ax.set_xscale("symlog", linthresh=0.25)
        ax.set_xticks(betas, [f"{b:g}" for b in betas])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
    left.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def markdown(curves: dict[str, list[Point]], chosen: Point, why: str) -> str:
    """The curve as tables (one per source) and the chosen beta."""
    lines = ["# SmeLU's trade-off curve", ""]
    for source, curve in curves.items():
        lines += [f"## --vary {source}", "",
                  "| variant | beta | LayerNorm | relative PD [95%] | log loss [95%] | pairs |",
                  "|---|---|---|---|---|---|"]
        for p in curve:
            lines.append(
                f"| {p.variant} | {p.beta:g} | {'yes' if p.layer_norm else 'no'} | "
                f"{p.pd:.4f} [{p.pd_interval[0]:.4f}, {p.pd_interval[1]:.4f}] | "
                f"{p.log_loss:.5f} [{p.log_loss_interval[0]:.5f}, "
                f"{p.log_loss_interval[1]:.5f}] | {p.pairs} |")
        lines.append("")
    lines += [f"Chosen beta: **{chosen.variant}** (beta {chosen.beta:g}, "
              f"{'with' if chosen.layer_norm else 'without'} LayerNorm): {why}.", "",
              "![relative PD and log loss against beta](curve.png)", ""]
    return "\n".join(lines)


def write(folder: str | Path, tolerance: float = TOLERANCE) -> Path:
    """Reads a comparison's report.json in ``folder``; writes curve.json, curve.md and
    curve.png beside it. Returns curve.md's path."""
    folder = Path(folder)
    result = read_result(folder, "draw a curve from")
    curves = {source: points(variants) for source, variants in tables(result).items()}
    curves = {source: curve for source, curve in curves.items() if curve}
    if not curves:
        raise ValueError(f"{folder}: no relu or smelu:BETA variants to draw")
    chosen, why = chosen_beta(next(iter(curves.values())), tolerance)
    plot(curves, folder / "curve.png", title=f"SmeLU against beta ({folder.name})")
    atomic_write_text(folder / "curve.json", json.dumps({
        "tolerance": tolerance, "chosen": chosen.variant, "chosen_beta": chosen.beta,
        "chosen_layer_norm": chosen.layer_norm, "rule": why,
        "curves": {s: [asdict(p) for p in c] for s, c in curves.items()}}, indent=1) + "\n")
    out = folder / "curve.md"
    atomic_write_text(out, markdown(curves, chosen, why))
    return out
