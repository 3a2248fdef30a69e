"""The comparison report: report.json, report.md and pd_vs_loss*.png, with the goals checked.

One table per source of disagreement (``--vary``): every variant with its techniques,
accuracy, reproducibility (mean ± std over pairs), training and serving cost, and a mark on
the Pareto frontier of relative PD against loss. The goals are judged for one single-model
variant, the "winner": the one named with ``--winner`` (chosen beforehand on the validation
split), or else the lowest-PD single model that is at least as accurate as ReLU and within
1.2x its request time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from steadyrank.core.fileio import atomic_write_json, atomic_write_text
from steadyrank.model.artifact.layout import RARITY_BUCKETS
from steadyrank.model.evaluation import intervals
from steadyrank.model.measures.metrics import SWAP_KS, swap_key

ACCURACY_SLACK = 0.0  # the winner's loss may not exceed ReLU's
REQUEST_BOUND = 1.2  # the winner's request time over ReLU's
TRAIN_TIME_BOUND = 2.5  # the winner's training time over ReLU's
ENSEMBLE = "relu-ensemble:4"
TOP10 = swap_key(10)  # the swap rate the goals judge
WHY = {
    "all": "the init seed and the row-order seed",
    "init": "only the init seed (same row order)",
    "order": "only the row-order seed (same init)",
    "async": "only asynchronous parameter-server training (same seeds)",
}


def loss_key(variants: dict[str, Any]) -> str:
    """The accuracy loss a comparison's variants carry: ``rmse`` (ratings) or ``log_loss``."""
    first = next(iter(variants.values()))
    return "rmse" if "rmse" in first else "log_loss"


def tables(result: dict[str, Any]) -> dict[str, Any]:
    """A comparison's tables by ``--vary`` source (a report made before sources existed has
    one, ``all``)."""
    return result.get("sources") or {"all": result["variants"]}


def table(result: dict[str, Any], source: str, where: str) -> dict[str, Any]:
    """One source's table; ValueError naming ``where`` and the sources it has otherwise."""
    found = tables(result)
    if source not in found:
        raise ValueError(f"{where}: no --vary {source} table (it has {', '.join(found)})")
    return found[source]


def _mean(variants: dict[str, Any], name: str, key: str) -> float:
    return variants[name][key]["mean"]


def pair_values(variants: dict[str, Any], name: str, key: str) -> list[float]:
    """A variant's per-pair values of a metric (its mean alone when none were kept)."""
    summary = variants[name][key]
    return list(summary.get("values") or [summary["mean"]])


def ratio_of(v: dict[str, Any], name: str, base: str, key: str) -> dict[str, Any]:
    """A goal's value: mean(name) / mean(base) with its bootstrap interval over pairs."""
    return {"value": _mean(v, name, key) / _mean(v, base, key),
            "interval": list(intervals.ratio_interval(pair_values(v, name, key),
                                                      pair_values(v, base, key)))}


def difference_of(v: dict[str, Any], first: str, second: str, key: str) -> dict[str, Any]:
    """A goal's value: mean(first) - mean(second) with its bootstrap interval over pairs."""
    return {"value": _mean(v, first, key) - _mean(v, second, key),
            "interval": list(intervals.difference_interval(pair_values(v, first, key),
                                                           pair_values(v, second, key)))}


def with_intervals(variants: dict[str, Any]) -> dict[str, Any]:
    """The variants' summaries with a 95% bootstrap interval (``ci``) over pairs added to
    every metric that has per-pair values."""
    out: dict[str, Any] = {}
    for name, metrics in variants.items():
        out[name] = {}
        for key, summary in metrics.items():
            if isinstance(summary, dict) and summary.get("values"):
                summary = {**summary, "ci": list(intervals.mean_interval(summary["values"]))}
            out[name][key] = summary
    return out


def relu_with_same_techniques(variants: dict[str, Any], name: str) -> str | None:
    """The variant that is ``name`` with ReLU for its activation (``smelu:2+ema:0.9`` ->
    ``relu+ema:0.9``), when the comparison has it."""
    activation, sep, rest = name.partition("+")
    if activation == "relu" or not sep:
        return None
    twin = f"relu+{rest}"
    return twin if twin in variants else None


def frontier(variants: dict[str, Any]) -> list[str]:
    """Variants on the Pareto frontier of (loss, relative PD): no other is better in both."""
    loss = loss_key(variants)
    points = {n: (_mean(variants, n, loss), _mean(variants, n, "relative_pd"))
              for n in variants}
    return [n for n, (lo, pd) in points.items()
            if not any((o[0] <= lo and o[1] <= pd) and o != (lo, pd)
                       for m, o in points.items() if m != n)]


def pick_winner(variants: dict[str, Any], single: dict[str, bool] | None = None) -> str | None:
    """The lowest-PD single-model variant (not ReLU itself) with loss <= ReLU's and request
    time <= 1.2x ReLU's; None without a ReLU baseline or a candidate."""
    if "relu" not in variants:
        return None
    loss = loss_key(variants)
    single = single or {n: "ensemble" not in n for n in variants}
    ok = [n for n in variants if n != "relu" and single.get(n, "ensemble" not in n)
          and _mean(variants, n, loss) <= _mean(variants, "relu", loss) + ACCURACY_SLACK
          and _mean(variants, n, "request_seconds")
          <= REQUEST_BOUND * _mean(variants, "relu", "request_seconds")]
    return min(ok, key=lambda n: _mean(variants, n, "relative_pd")) if ok else None


def goals(result: dict[str, Any], winner: str | None = None,
          source: str | None = None) -> list[dict[str, Any]]:
    """The goals, measured for ``winner`` in one source's table: value, bound, met."""
    v = (result["sources"][source] if source and "sources" in result
         else result["variants"])
    best = winner or pick_winner(v, result.get("single_model"))
    if "relu" not in v or best is None or best not in v:
        return []
    loss = loss_key(v)
    out = [
        {"goal": f"{best} relative PD <= 0.5x relu",
         **ratio_of(v, best, "relu", "relative_pd"), "bound": 0.5, "kind": "max"},
        {"goal": f"{best} {loss} <= relu's", **difference_of(v, best, "relu", loss),
         "bound": ACCURACY_SLACK, "kind": "max"},
        *([{"goal": f"{best} AUC >= relu's", **difference_of(v, "relu", best, "auc"),
            "bound": 0.0, "kind": "max", "detail": "ReLU's AUC minus this one's"}]
          if "auc" in v[best] and "auc" in v["relu"] else []),
        {"goal": f"{best} request time <= {REQUEST_BOUND}x relu",
         **ratio_of(v, best, "relu", "request_seconds"), "bound": REQUEST_BOUND, "kind": "max"},
        {"goal": f"{best} training time <= {TRAIN_TIME_BOUND}x relu",
         **ratio_of(v, best, "relu", "train_seconds"), "bound": TRAIN_TIME_BOUND,
         "kind": "max"},
    ]
    if ENSEMBLE in v:
        out.insert(1, {"goal": f"{best} relative PD <= {ENSEMBLE}'s",
                       **ratio_of(v, best, ENSEMBLE, "relative_pd"), "bound": 1.0,
                       "kind": "max"})
    if ENSEMBLE in v and TOP10 in v[best]:
        out.insert(0, {
            "goal": f"{best} top-10 swap rate <= {ENSEMBLE}'s",
            **ratio_of(v, best, ENSEMBLE, TOP10), "bound": 1.0, "kind": "max",
            "detail": f"{_mean(v, best, TOP10):.3f} vs "
                      f"{_mean(v, ENSEMBLE, TOP10):.3f}"})
    twin = relu_with_same_techniques(v, best)
    if twin:
        out.append({"goal": f"SmeLU's own share: {best} relative PD < {twin}'s",
                    **ratio_of(v, best, twin, "relative_pd"), "bound": 1.0, "kind": "max"})
    for g in out:
        g["met"] = g["value"] <= g["bound"]
        g["shown"] = g["interval"][1] <= g["bound"]  # the interval's upper bound meets it too
        g["selected"] = best
        g["chosen_by"] = "named (--winner)" if winner else "rule (lowest-PD accurate single model)"
    return out


def pairs_note(result: dict[str, Any], variants: dict[str, Any], best: str | None) -> str:
    """What the number of pairs lets the intervals say, and how many a fair one needs."""
    pairs = result["pairs"]
    text = (f"Intervals: 95% percentile bootstrap over the {pairs} pairs of each variant "
            f"({intervals.RESAMPLES:,} resamples, seed {intervals.SEED}; a ratio resamples "
            "the pairs of its two variants independently).")
    if pairs < 8:
        text += (f" With {pairs} pairs a bootstrap interval is too narrow: a resample of "
                 f"{pairs} values cannot vary as much as their mean does, so read these "
                 "intervals as a floor on the uncertainty.")
    if best and "relu" in variants:
        need = intervals.ratio_pairs_needed(pair_values(variants, best, "relative_pd"),
                                            pair_values(variants, "relu", "relative_pd"), 0.05)
        if need:
            text += (f" From the observed spread, the ratio of {best}'s relative PD to "
                     f"ReLU's needs about {need} pairs per variant for a 95% interval of "
                     "±0.05.")
    return text


def _fmt(summary: dict[str, Any], scale: float = 1.0, digits: int = 4) -> str:
    """``mean ± std [low, high]``: the mean over pairs, their std, the 95% interval."""
    mean, std = summary["mean"] * scale, summary["std"] * scale
    text = f"{mean:.{digits}f} ± {std:.{digits}f}"
    if "ci" in summary:
        low, high = (c * scale for c in summary["ci"])
        text += f" [{low:.{digits}f}, {high:.{digits}f}]"
    return text


def _techniques(result: dict[str, Any], name: str) -> str:
    found = dict(result.get("techniques", {}).get(name, {}))
    found.pop("activation", None)
    found.pop("smelu_beta", None)
    return ", ".join(f"{k}={v}" if v is not True else k for k, v in found.items()) or "-"


def _pair_seeds(result: dict[str, Any]) -> str:
    """' (pair indices 3-7, seeds 7-16)' when the pairs do not start at 0, else ''."""
    first = result.get("first_pair", 0)
    if not first:
        return ""
    # pair p's replicas take seeds 2p+1 and 2p+2 (older reports did not record them)
    low, high = result.get("seeds") or (2 * first + 1, 2 * (first + result["pairs"] - 1) + 2)
    return f" (pair indices {first}-{first + result['pairs'] - 1}, seeds {low}-{high})"


def _table(result: dict[str, Any], variants: dict[str, Any]) -> list[str]:
    loss = loss_key(variants)
    on_frontier = set(frontier(variants))
    ranked = swap_key(SWAP_KS[0]) in next(iter(variants.values()))
    ranking_heads = ([f"top-{k} swap" for k in SWAP_KS] + ["Kendall tau"]) if ranked else []
    first = next(iter(variants.values()))
    quality_keys = [k for k in ("auc", "calibration") if k in first]  # binary tasks
    quality = [{"auc": "AUC"}.get(k, k) for k in quality_keys]
    heads = [loss, *quality, "relative PD", "absolute PD", *ranking_heads, "train s",
             "train ex/s", "parameters", "request ms"]
    lines = ["| variant | techniques | " + " | ".join(heads) + " | frontier |",
             "|---" * (len(heads) + 3) + "|"]
    for name, s in variants.items():
        ranking = ([_fmt(s[swap_key(k)], digits=3) for k in SWAP_KS]
                   + [_fmt(s["kendall_tau"], digits=3)]) if ranked else []
        extra = [_fmt(s[k], digits=4 if k == "auc" else 3) for k in quality_keys]
        cells = [_fmt(s[loss]), *extra, _fmt(s["relative_pd"]), _fmt(s["absolute_pd"]),
                 *ranking,
                 f"{s['train_seconds']['mean']:.1f}",
                 f"{s['train_examples_per_second']['mean']:,.0f}",
                 f"{s['parameters']['mean']:,.0f}", f"{s['request_seconds']['mean'] * 1e3:.2f}"]
        lines.append(f"| {name} | {_techniques(result, name)} | " + " | ".join(cells)
                     + f" | {'★' if name in on_frontier else ''} |")
    return lines


def _breakdown(variants: dict[str, Any]) -> list[str]:
    """Where each variant's replicas disagree (means over pairs): each rarity slice's share
    of the PD [of the rows], the top and bottom score deciles' shares, and the PD with only
    the tables or only the network differing; [] when no pair was broken down."""
    shown = {n: s for n, s in variants.items() if "pd_share_oov" in s}
    if not shown:
        return []
    slices = [name for name, _ in RARITY_BUCKETS]
    lines = ["", "Where the disagreement lives (`steadyrank explain-pd`; means over pairs): "
             "each slice of eval rows by its rarest value's training count, its share of "
             "the relative PD [and of the rows]; the lowest and highest score deciles' "
             "shares of the PD; and the relative PD of B with A's tables (only the networks "
             "differ) or with A's network (only the tables differ), against A. A swapped "
             "part above the whole PD means the parts are not interchangeable (different "
             "inits), and the split does not place the disagreement.", "",
             "| variant | " + " | ".join(f"count {n}" for n in slices)
             + " | decile 1 | decile 10 | whole PD | only network | only tables |",
             "|---" * (len(slices) + 6) + "|"]
    for name, s in shown.items():
        cells = [f"{s[f'pd_share_{n}']['mean']:.1%} [{s[f'rows_{n}']['mean']:.1%}]"
                 for n in slices]
        cells += [f"{s['pd_share_d1']['mean']:.1%}", f"{s['pd_share_d10']['mean']:.1%}",
                  _fmt(s["relative_pd"]), _fmt(s["pd_network_only"]),
                  _fmt(s["pd_tables_only"])]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _ranking_note(result: dict[str, Any]) -> str:
    """What the swap rates rank, or why there are none."""
    if result.get("ranking"):
        return (f"No top-k swap rates or Kendall tau: {result['ranking']}. Request time: "
                "median of a `serving_default` call on one eval row.")
    return (f"Top-k swap rates rank all {result['ranking_items']:,} items for "
            f"{result['ranking_users']} users; Kendall tau over the first 100 of them. "
            "Request time: median of a `rank` call scoring the whole catalog for one user.")


def markdown(result: dict[str, Any], command: str, notes: str = "",
             winner: str | None = None) -> str:
    """report.md text."""
    sources = result.get("sources") or {result.get("vary", ["all"])[0]: result["variants"]}
    lines = [
        "# Replica reproducibility report", "",
        f"Command: `{command}`", "",
        f"Data: {_data_name(result)} (checksum "
        f"`{result['data_checksum'][:12]}`), {result['split']} split of "
        f"{result['eval_rows']:,} rows. Replicas A and B of a pair share data and config; "
        f"{result['pairs']} pairs per variant{_pair_seeds(result)}, each figure the mean ± "
        f"standard deviation over pairs [its 95% bootstrap interval]. {_ranking_note(result)} "
        "Requests run on the loaded "
        "SavedModel (this machine, 2 shared cores). "
        "★ marks the Pareto frontier of relative PD against loss.",
    ]
    all_goals = {}
    for source, variants in sources.items():
        lines += ["", f"## Replicas differing by {WHY.get(source, source)} (`--vary {source}`)",
                  "", *_table(result, with_intervals(variants)), *_breakdown(variants)]
        checked = goals(result, winner, source)
        all_goals[source] = checked
        if checked:
            lines += ["", f"Goals for **{checked[0]['selected']}** "
                      f"(chosen by {checked[0]['chosen_by']}). Met: the point estimate "
                      "is within the bound; shown: the 95% interval's upper end is too "
                      "(a claim whose interval crosses its bound is not shown).", "",
                      "| goal | measured | 95% interval | bound | met | shown |",
                      "|---|---|---|---|---|---|"]
            for g in checked:
                shown = f"{g['value']:.3f}" + (f" ({g['detail']})" if "detail" in g else "")
                low, high = g["interval"]
                lines.append(f"| {g['goal']} | {shown} | [{low:.3f}, {high:.3f}] | "
                             f"{g['bound']} | {'yes' if g['met'] else '**no**'} | "
                             f"{'yes' if g['shown'] else '**no**'} |")
        lines += ["", pairs_note(result, variants,
                                 checked[0]["selected"] if checked else None)]
    if notes.strip():
        lines += ["", notes.strip()]
    for source in sources:
        image = _plot_name(source, sources)
        lines += ["", f"![relative PD against loss, --vary {source}]({image})"]
    lines.append("")
    return "\n".join(lines)


def _data_name(result: dict[str, Any]) -> str:
    data = result["config"]["data"]
    return data.get("format") or data["dataset"]


def _plot_name(source: str, sources: dict[str, Any]) -> str:
    return "pd_vs_loss.png" if source == next(iter(sources)) else f"pd_vs_loss-{source}.png"


def plot(variants: dict[str, Any], path: Path, title: str = "") -> None:
    """relative PD against loss, one point per variant with error bars, frontier joined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    loss = loss_key(variants)
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)

    def bar(summary: dict[str, Any]) -> list[list[float]]:
        """The 95% interval as error bar lengths below and above the mean."""
        low, high = summary["ci"]
        return [[summary["mean"] - low], [high - summary["mean"]]]

    for name, s in with_intervals(variants).items():
        ax.errorbar(s[loss]["mean"], s["relative_pd"]["mean"], xerr=bar(s[loss]),
                    yerr=bar(s["relative_pd"]), fmt="o", capsize=3, label=name)
        ax.annotate(name, (s[loss]["mean"], s["relative_pd"]["mean"]),
                    textcoords="offset points", xytext=(5, 5), fontsize=7)
    front = sorted(frontier(variants), key=lambda n: variants[n][loss]["mean"])
    ax.plot([variants[n][loss]["mean"] for n in front],
            [variants[n]["relative_pd"]["mean"] for n in front], "k--", lw=1,
            label="Pareto frontier")
    ax.set_xlabel(f"eval {loss} (lower is better)")
    ax.set_ylabel("relative PD between replicas")
    ax.set_title((title or "Prediction difference vs loss") + " (bars: 95% intervals)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=6)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)


def write(result: dict[str, Any], out: str | Path, command: str, notes: str = "",
          winner: str | None = None) -> Path:
    """Writes report.json, report.md and the plots into ``out``; returns ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sources = tables(result)
    checked = {s: goals(result, winner, s) for s in sources}
    atomic_write_json(out / "report.json", {**result, "command": command, "winner": winner,
                                     "notes": notes, "goals": checked,
                                     "frontier": {s: frontier(v) for s, v in sources.items()}},
                      sort_keys=False)
    for source, variants in sources.items():
        plot(variants, out / _plot_name(source, sources),
             f"Prediction difference vs loss (--vary {source})")
    atomic_write_text(out / "report.md", markdown(result, command, notes, winner))
    return out


def written_notes(markdown_text: str) -> str:
    """The notes an older report.md carries, for reports whose report.json predates the
    ``notes`` field: its text after the last source's results and goals tables up to the
    plots, and any text after the plots (where the first reports put them)."""
    lines = markdown_text.splitlines()
    plots = [i for i, line in enumerate(lines) if line.startswith("![")]
    first_plot = plots[0] if plots else len(lines)
    sources = [i for i, line in enumerate(lines[:first_plot])
               if line.startswith("## Replicas differing")]
    i = sources[-1] + 1 if sources else 0
    for head in ("| variant |", "| goal |"):  # the source's tables, in this order
        found = next((j for j in range(i, first_plot) if lines[j].startswith(head)), None)
        if found is None or any(lines[k].startswith("## ") and lines[k] != "## Goals"
                                for k in range(i, found)):
            continue
        i = found
        while i < first_plot and lines[i].startswith("|"):
            i += 1
    after = lines[plots[-1] + 1:] if plots else []
    notes = [line for line in [*lines[i:first_plot], "", *after]
             if not line.startswith("Intervals: 95% percentile bootstrap")]
    return "\n".join(notes).strip()


def read_result(folder: str | Path, purpose: str) -> dict[str, Any]:
    """A comparison folder's report.json; FileNotFoundError naming the folder and what it
    was read for (``purpose``) when there is none."""
    path = Path(folder) / "report.json"
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: no report.json to {purpose}")
    return json.loads(path.read_text())


def rerender(folder: str | Path, winner: str | None = None, notes: str | None = None
             ) -> Path:
    """Renders a report again from its report.json, with intervals, without retraining:
    report.md, the plots and the goals (the command, winner and notes kept). ``winner``:
    judge the goals for this variant instead (a single model of the report, named after the
    run, as a tuning round's rule names it); ``notes``: replace the notes."""
    folder = Path(folder)
    result = read_result(folder, "render")
    if winner is not None:
        single = result.get("single_model", {})
        if winner not in result["variants"] or not single.get(winner, True):
            raise ValueError(f"--winner {winner!r} is not a single-model variant of "
                             f"{folder}; variants: {', '.join(result['variants'])}")
    if notes is None:
        notes = result.get("notes")
    if notes is None and (folder / "report.md").is_file():
        notes = written_notes((folder / "report.md").read_text())
    kept = {k: v for k, v in result.items()
            if k not in ("command", "winner", "notes", "goals", "frontier")}
    return write(kept, folder, result.get("command", ""), notes or "",
                 winner if winner is not None else result.get("winner"))
