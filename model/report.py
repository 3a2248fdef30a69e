"""The comparison report: report.json, report.md and pd_vs_loss.png, with the goals checked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from steadyrank.model.compare import SWAP_KS, write_json

ACCURACY_SLACK = 0.005  # SmeLU's loss may exceed ReLU's by at most this much


def _loss_key(variants: dict[str, Any]) -> str:
    first = next(iter(variants.values()))
    return "rmse" if "rmse" in first else "log_loss"


def _mean(variants: dict[str, Any], name: str, key: str) -> float:
    return variants[name][key]["mean"]


def goals(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's goals, measured: each with the value, the bound and whether it is met.

    The SmeLU variant judged is the one with the lowest relative PD among the SmeLU variants
    whose loss is within ``ACCURACY_SLACK`` of ReLU's (or the lowest-PD SmeLU if none is).
    """
    v = result["variants"]
    loss = _loss_key(v)
    smelus = [n for n in v if n.startswith("smelu") and "ensemble" not in n]
    if "relu" not in v or not smelus:
        return []
    relu_loss = _mean(v, "relu", loss)
    accurate = [n for n in smelus if _mean(v, n, loss) <= relu_loss + ACCURACY_SLACK]
    best = min(accurate or smelus, key=lambda n: _mean(v, n, "relative_pd"))
    out = [
        {"goal": f"{best} relative PD <= 0.6x relu",
         "value": _mean(v, best, "relative_pd") / _mean(v, "relu", "relative_pd"),
         "bound": 0.6, "kind": "ratio"},
        {"goal": f"{best} top-10 swap rate <= 0.5x relu",
         "value": _mean(v, best, "top10_swap_rate") / _mean(v, "relu", "top10_swap_rate"),
         "bound": 0.5, "kind": "ratio"},
        {"goal": f"{best} {loss} <= relu {loss} + {ACCURACY_SLACK}",
         "value": _mean(v, best, loss) - relu_loss, "bound": ACCURACY_SLACK, "kind": "delta"},
        {"goal": f"{best} training examples/s >= 0.95x relu (noisy here; see bench-train)",
         "value": _mean(v, best, "train_examples_per_second")
         / _mean(v, "relu", "train_examples_per_second"), "bound": 0.95, "kind": "min"},
    ]
    ensemble = "relu-ensemble:4"
    if ensemble in v:
        out += [
            {"goal": f"{best} top-10 swap rate <= {ensemble}'s",
             "value": _mean(v, best, "top10_swap_rate") / _mean(v, ensemble, "top10_swap_rate"),
             "bound": 1.0, "kind": "ratio"},
            {"goal": f"{best} parameters <= 1/4 of {ensemble}'s",
             "value": _mean(v, best, "parameters") / _mean(v, ensemble, "parameters"),
             "bound": 0.25, "kind": "ratio"},
            {"goal": f"{best} request time vs {ensemble}'s (serving cost)",
             "value": _mean(v, best, "request_seconds") / _mean(v, ensemble, "request_seconds"),
             "bound": 0.25, "kind": "ratio"},
        ]
    for g in out:
        g["met"] = g["value"] >= g["bound"] if g["kind"] == "min" else g["value"] <= g["bound"]
        g["selected_smelu"] = best
    return out


def _fmt(summary: dict[str, Any], scale: float = 1.0, digits: int = 4) -> str:
    mean, std = summary["mean"] * scale, summary["std"] * scale
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def markdown(result: dict[str, Any], command: str, notes: str = "") -> str:
    """report.md text."""
    v = result["variants"]
    loss = _loss_key(v)
    lines = [
        "# Replica reproducibility report", "",
        f"Command: `{command}`", "",
        f"Data: {result['config']['data']['dataset']} (checksum "
        f"`{result['data_checksum'][:12]}`), {result['split']} split of "
        f"{result['eval_rows']:,} rows. Replicas A and B of a pair share data and config and "
        f"differ only by seed (init and shuffle order); {result['pairs']} pairs per variant, "
        "each figure the mean ± standard deviation over pairs. Top-k swap rates rank all "
        f"{result['ranking_items']:,} items for {result['ranking_users']} users; Kendall tau "
        "over the first 100 of them. Request time: median of a `rank` call scoring the whole "
        "catalog for one user on the loaded SavedModel (this machine, 2 shared cores).", "",
        f"| variant | {loss} | relative PD | absolute PD | "
        + " | ".join(f"top-{k} swap" for k in SWAP_KS)
        + " | Kendall tau | train s | train ex/s | parameters | request ms |",
        "|---" * (9 + len(SWAP_KS)) + "|",
    ]
    for name, s in v.items():
        lines.append(
            f"| {name} | {_fmt(s[loss])} | {_fmt(s['relative_pd'])} | "
            f"{_fmt(s['absolute_pd'])} | "
            + " | ".join(_fmt(s[f"top{k}_swap_rate"], digits=3) for k in SWAP_KS)
            + f" | {_fmt(s['kendall_tau'], digits=3)} | {s['train_seconds']['mean']:.1f} | "
            f"{s['train_examples_per_second']['mean']:,.0f} | {s['parameters']['mean']:,.0f} | "
            f"{s['request_seconds']['mean'] * 1e3:.2f} |")
    checked = goals(result)
    if checked:
        lines += ["", "## Goals", "", "| goal | measured | bound | met |", "|---|---|---|---|"]
        for g in checked:
            lines.append(f"| {g['goal']} | {g['value']:.3f} | {g['bound']} | "
                         f"{'yes' if g['met'] else '**no**'} |")
    if notes.strip():
        lines += ["", notes.strip()]
    lines += ["", "![relative PD against loss](pd_vs_loss.png)", ""]
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> None:
    """pd_vs_loss.png: relative PD against loss, one point per variant with error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    v = result["variants"]
    loss = _loss_key(v)
    fig, ax = plt.subplots(figsize=(7, 5), dpi=120)
    for name, s in v.items():
        ax.errorbar(s[loss]["mean"], s["relative_pd"]["mean"], xerr=s[loss]["std"],
                    yerr=s["relative_pd"]["std"], fmt="o", capsize=3, label=name)
        ax.annotate(name, (s[loss]["mean"], s["relative_pd"]["mean"]),
                    textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.set_xlabel(f"eval {loss} (lower is better)")
    ax.set_ylabel("relative PD between replicas")
    ax.set_title("Prediction difference vs loss")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)


def write(result: dict[str, Any], out: str | Path, command: str, notes: str = "") -> Path:
    """Writes report.json, report.md and pd_vs_loss.png into ``out``; returns ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "report.json", {**result, "command": command, "goals": goals(result)})
    plot(result, out / "pd_vs_loss.png")
    md = out / "report.md"
    tmp = md.with_suffix(".tmp")
    tmp.write_text(markdown(result, command, notes))
    tmp.replace(md)
    return out
