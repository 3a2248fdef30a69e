"""Does a study's judged result replicate on a fresh draw of the data?

The judgment named a winner (``--winner``) and measured its relative PD against the base
(``relu``) under one ``--vary`` source, with a 95% bootstrap interval over pairs. The
replication trains the winner and the base again, the same config on another draw of the
data. The result replicates when the replication's PD ratio lies inside the judgment's
interval (reports/criteo-synth-2/plan.md). :func:`write` checks it from the two folders'
report.json and writes replication.md and replication.json beside the replication's report
(``steadyrank report FOLDER --replicates JUDGMENT_FOLDER``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from steadyrank.core.fileio import atomic_write_json, atomic_write_text
from steadyrank.model.config import from_dict
from steadyrank.model.evaluation.report import (
    difference_of,
    loss_key,
    pair_values,
    ratio_of,
    read_result,
    table,
)

DATA_KEYS = ("train", "eval")  # what may differ between the two runs: which rows they read


def _table(result: dict[str, Any], source: str, names: tuple[str, ...], what: str
           ) -> dict[str, Any]:
    found = table(result, source, f"the {what}")
    missing = [n for n in names if n not in found]
    if missing:
        raise ValueError(f"the {what} lacks variant(s) {', '.join(missing)} under --vary "
                         f"{source} (it has {', '.join(found)})")
    return found


def _without_data(config: dict[str, Any]) -> dict[str, Any]:
    """A recorded config with every default filled in (a run recorded before a setting
    existed trained with its default) and without the rows it reads."""
    full = from_dict(config, "a recorded config").to_dict()
    full.pop("serving", None)  # a name on the server is not part of what was trained
    full["data"] = {k: v for k, v in full["data"].items() if k not in DATA_KEYS}
    return full


def _measures(variants: dict[str, Any], winner: str, base: str) -> dict[str, Any]:
    out = {"relative_pd_ratio": ratio_of(variants, winner, base, "relative_pd"),
           "pairs": len(pair_values(variants, winner, "relative_pd"))}
    loss = loss_key(variants)
    out["loss_difference"] = {"metric": loss, **difference_of(variants, winner, base, loss)}
    if "auc" in variants[winner] and "auc" in variants[base]:
        out["auc_difference"] = difference_of(variants, base, winner, "auc")
    return out


def check(replication: dict[str, Any], judgment: dict[str, Any], base: str = "relu",
          source: str = "all") -> dict[str, Any]:
    """The judgment's winner against ``base`` in both runs, and whether the replication's
    relative-PD ratio lies inside the judgment's interval. ValueError when the two are not a
    judgment and its replication: no winner named, variants or the source missing, configs
    that differ beyond the rows read, another split, or the same data."""
    winner = judgment.get("winner")
    if not winner:
        raise ValueError("the judgment names no winner (run it with --winner)")
    if replication.get("winner") not in (None, winner):
        raise ValueError(f"the replication names winner {replication['winner']!r}, the "
                         f"judgment {winner!r}")
    judged = _table(judgment, source, (winner, base), "judgment")
    again = _table(replication, source, (winner, base), "replication")
    if _without_data(judgment["config"]) != _without_data(replication["config"]):
        raise ValueError("the replication's config differs from the judgment's beyond the "
                         f"rows it reads (data.{' / data.'.join(DATA_KEYS)})")
    if judgment.get("split") != replication.get("split"):
        raise ValueError(f"the replication measured the {replication.get('split')} split, "
                         f"the judgment the {judgment.get('split')} split")
    if judgment.get("data_checksum") == replication.get("data_checksum"):
        raise ValueError("the replication ran on the judgment's own data (checksum "
                         f"{str(judgment.get('data_checksum'))[:12]}): it needs a fresh draw")
    out = {"winner": winner, "base": base, "source": source,
           "judgment": {"data_checksum": judgment.get("data_checksum"),
                        **_measures(judged, winner, base)},
           "replication": {"data_checksum": replication.get("data_checksum"),
                           **_measures(again, winner, base)}}
    low, high = out["judgment"]["relative_pd_ratio"]["interval"]
    out["replicated"] = low <= out["replication"]["relative_pd_ratio"]["value"] <= high
    return out


def _cell(measure: dict[str, Any], digits: int, signed: bool = False) -> str:
    low, high = measure["interval"]
    sign = "+" if signed else ""
    return (f"{measure['value']:{sign}.{digits}f} "
            f"[{low:{sign}.{digits}f}, {high:{sign}.{digits}f}]")


def markdown(found: dict[str, Any]) -> str:
    """The two runs side by side and the verdict."""
    winner, base, j, r = found["winner"], found["base"], found["judgment"], found["replication"]
    lines = [f"# Replication: `{winner}` against `{base}` (`--vary {found['source']}`)", "",
             f"| | judgment (data `{str(j['data_checksum'])[:12]}`) | replication (data "
             f"`{str(r['data_checksum'])[:12]}`) |", "|---|---|---|",
             f"| relative PD x {base}'s | {_cell(j['relative_pd_ratio'], 3)} | "
             f"{_cell(r['relative_pd_ratio'], 3)} |",
             f"| {j['loss_difference']['metric']} minus {base}'s | "
             f"{_cell(j['loss_difference'], 4, True)} | {_cell(r['loss_difference'], 4, True)} |"]
    if "auc_difference" in j and "auc_difference" in r:
        lines.append(f"| {base}'s AUC minus the winner's | {_cell(j['auc_difference'], 4, True)}"
                     f" | {_cell(r['auc_difference'], 4, True)} |")
    lines.append(f"| pairs | {j['pairs']} | {r['pairs']} |")
    value = r["relative_pd_ratio"]["value"]
    low, high = j["relative_pd_ratio"]["interval"]
    verdict = (f"**Replicated**: the replication's PD ratio, {value:.3f}x, lies inside the "
               f"judgment's interval [{low:.3f}, {high:.3f}]." if found["replicated"] else
               f"**Did not replicate**: the replication's PD ratio, {value:.3f}x, lies "
               f"outside the judgment's interval [{low:.3f}, {high:.3f}].")
    lines += ["", verdict, "",
              "Intervals: 95% percentile bootstrap over each run's pairs (a ratio or a "
              "difference resamples the pairs of its two variants independently).", ""]
    return "\n".join(lines)


def write(folder: str | Path, judgment_folder: str | Path, base: str = "relu",
          source: str = "all") -> Path:
    """Checks the replication in ``folder`` against the judgment in ``judgment_folder``;
    writes replication.json and replication.md beside the replication's report. Returns
    replication.md's path."""
    folder = Path(folder)
    found = check(read_result(folder, "check as a replication"),
                  read_result(judgment_folder, "check a replication against"), base, source)
    atomic_write_json(folder / "replication.json", found, sort_keys=False)
    out = folder / "replication.md"
    atomic_write_text(out, markdown(found))
    return out
