"""Continuous training against retraining from scratch, round by round, on the drifting
Criteo-shaped click stream (issue 44's goals).

    python bench/continuous_bench.py [--rounds 8] [--shard-rows 20000] [--seed 7]
                                     [--config configs/stream.toml] [--out FILE]

Data: ``steadyrank data synth --schema criteo`` shards of ``--shard-rows`` rows (drift 0.5,
the generator's default), generated into bench/out once. Round r (1..R) sees shards 0..r-1
for the first time at shard r-1:

- continuous: ``trainer --follow``'s round (``continuous.follow``, one round per shard):
  replicas A and B warm-started from the serving version, one pass over the new shard, the
  tables grown with the values that arrived;
- from scratch: ``trainer``'s fresh retrain (``replicas.train_round``, no warm start) on all
  shards so far, one pass, the same config otherwise.

For each, per round: the seconds the round took (statistics pass, training both replicas,
measuring, publishing), the seconds both replicas spent in their training passes (from
their manifests) and its training rows; progressive validation, the serving version
(round r-1's) on round r's new shard before training on it: log loss and the share of rows
that meet an out-of-vocabulary row; and version-to-version relative PD, the new A against
the serving A on the new shard (what the churn gate measures). Frozen tables: version 1 of
the continuous model on every later shard (its out-of-vocabulary share, as if the tables
never grew). Reported: the table, training-pass seconds per 1,000 rows, the largest progressive
log-loss gap (continuous minus scratch), the ratio of mean version-to-version PD with its
bootstrap interval over rounds, and the out-of-vocabulary shares' first and last rounds.
Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from steadyrank.model import config as cfg  # noqa: E402
from steadyrank.model.artifact.reader import read_export_manifest  # noqa: E402
from steadyrank.model.data import criteo_synth  # noqa: E402
from steadyrank.model.data.splits import prepare_data  # noqa: E402
from steadyrank.model.evaluation.intervals import ratio_interval  # noqa: E402
from steadyrank.model.publishing import continuous, replicas  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
NAME = "clicks"


def quiet(_: str) -> None:
    """Drops the trainer's progress lines (the bench prints its own)."""


def stream(rounds: int, shard_rows: int, seed: int) -> list[Path]:
    """The stream's first ``rounds`` shards (generated into bench/out once)."""
    folder = REPO / "bench" / "out" / f"stream-{seed}-{shard_rows}x{rounds}"
    spec = criteo_synth.CriteoSpec(rows=rounds * shard_rows, shard_rows=shard_rows, seed=seed)
    if not (folder / "manifest.json").exists():
        criteo_synth.generate(spec, folder, force=True)
    return sorted(folder.glob("part-*.parquet"))


def fit_seconds(base: Path, version: int) -> float:
    """Seconds both replicas of ``version`` spent in training passes (their manifests')."""
    return sum(read_export_manifest(base / name / str(version)).training_seconds
               for name in (NAME, f"{NAME}-b"))


def continuous_round(config: cfg.Config, base: Path, live: Path, shard: Path) -> dict:
    """Puts ``shard`` in the followed folder and runs one round on it."""
    os.link(shard, live / shard.name)
    started = time.perf_counter()
    (result,) = continuous.follow(config, base, NAME, log=quiet, should_stop=lambda _: True,
                                  max_rounds=1)
    seconds = time.perf_counter() - started
    record = continuous.FollowState.read(continuous.state_folder(base, NAME)).rounds[-1]
    return {"seconds": seconds, "fit_seconds": fit_seconds(base, result.version),
            "rows": record["rows"], "published": result.published,
            "log_loss": record.get("progressive_log_loss"), "oov": record.get("oov_share"),
            "pd": (result.churn or {}).get("relative_pd")}


def scratch_round(config: cfg.Config, base: Path, shards: list[Path]) -> dict:
    """Retrains from scratch on ``shards`` (the newest is the round's new shard)."""
    round_config = replace(config, data=replace(config.data, train=tuple(map(str, shards)),
                                                eval=(str(shards[-1]),), follow=False))
    started = time.perf_counter()
    prepared = prepare_data(round_config, log=quiet)
    serving = sorted((base / NAME).glob("[0-9]*"), key=lambda p: int(p.name))
    numbers = continuous.progressive(serving[-1], prepared) if serving else {}
    result = replicas.train_round(round_config, base, NAME, log=quiet, prepared=prepared)
    return {"seconds": time.perf_counter() - started,
            "fit_seconds": fit_seconds(base, result.version), "rows": int(prepared.train.rows),
            "published": result.published, "log_loss": numbers.get("progressive_log_loss"),
            "oov": numbers.get("oov_share"), "pd": (result.churn or {}).get("relative_pd")}


def frozen_oov(config: cfg.Config, first: Path, shard: Path) -> float | None:
    """The out-of-vocabulary share of ``shard`` for version 1 (tables that never grew)."""
    one = replace(config, data=replace(config.data, train=(str(shard),), eval=(str(shard),),
                                       follow=False))
    return continuous.progressive(first, prepare_data(one, log=quiet)).get("oov_share")


def summary(rows: list[dict]) -> dict:
    """The goals' figures from the per-round rows."""
    later = [r for r in rows if r["continuous"]["pd"] is not None
             and r["scratch"]["pd"] is not None]
    cont_pd = [r["continuous"]["pd"] for r in later]
    scratch_pd = [r["scratch"]["pd"] for r in later]
    gaps = [r["continuous"]["log_loss"] - r["scratch"]["log_loss"] for r in rows
            if r["continuous"]["log_loss"] is not None and r["scratch"]["log_loss"] is not None]
    per_k = {kind: [1000 * r[kind]["fit_seconds"] / r[kind]["rows"] for r in rows]
             for kind in ("continuous", "scratch")}
    out = {"largest_log_loss_gap": max(gaps) if gaps else None,
           "mean_log_loss_gap": sum(gaps) / len(gaps) if gaps else None,
           "fit_seconds_per_1k_rows": per_k,
           "fit_seconds": {kind: [r[kind]["fit_seconds"] for r in rows]
                           for kind in ("continuous", "scratch")}}
    if later:
        ratio = (sum(cont_pd) / len(cont_pd)) / (sum(scratch_pd) / len(scratch_pd))
        out["pd_ratio"] = ratio
        out["pd_ratio_interval"] = ratio_interval(cont_pd, scratch_pd)
    return out


def show(rows: list[dict], total: dict) -> None:
    """Prints the per-round table and the goals."""
    def f(value: float | None, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    print(f"{'round':>5} {'rows c/s':>15} {'seconds c/s':>13} {'fit s c/s':>11} "
          f"{'prog. log loss c/s':>19} {'version PD c/s':>15} {'OOV c/frozen':>13}")
    for r in rows:
        c, s = r["continuous"], r["scratch"]
        print(f"{r['round']:>5} {c['rows']:>7,}/{s['rows']:<7,} "
              f"{c['seconds']:>6.1f}/{s['seconds']:<6.1f} "
              f"{c['fit_seconds']:>5.1f}/{s['fit_seconds']:<5.1f} "
              f"{f(c['log_loss'], '.4f'):>9}/{f(s['log_loss'], '.4f'):<9} "
              f"{f(c['pd'], '.4f'):>7}/{f(s['pd'], '.4f'):<7} "
              f"{f(c['oov'], '.3f'):>6}/{f(r['frozen_oov'], '.3f'):<6}")
    print(json.dumps(total, indent=1))


def main() -> None:
    """Runs the rounds and writes the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--shard-rows", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--config", default=str(REPO / "configs" / "stream.toml"))
    parser.add_argument("--continuous-set", action="append", default=[],
                        metavar="SECTION.KEY=VALUE",
                        help="override a config value of the continuous rounds only (e.g. "
                        "train.learning_rate=0.001: each round's pass at a smaller rate)")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" /
                                              "continuous_bench.json"))
    args = parser.parse_args()
    if args.rounds < 2:
        parser.error(f"--rounds must be >= 2, got {args.rounds}")
    shards = stream(args.rounds, args.shard_rows, args.seed)
    config = cfg.load(args.config)
    ongoing = cfg.load(args.config, args.continuous_set)
    work = Path(tempfile.mkdtemp(prefix="continuous-bench-"))
    live = work / "live"
    live.mkdir()
    followed = replace(ongoing, data=replace(ongoing.data,
                                             train=(str(live / "part-*.parquet"),),
                                             follow=True))
    rows: list[dict] = []
    try:
        for number in range(1, args.rounds + 1):
            shard = shards[number - 1]
            row = {"round": number, "shard": shard.name,
                   "continuous": continuous_round(followed, work / "continuous", live, shard),
                   "scratch": scratch_round(config, work / "scratch", shards[:number])}
            first = work / "continuous" / NAME / "1"
            row["frozen_oov"] = frozen_oov(config, first, shard) if number > 1 else None
            rows.append(row)
            c, s = row["continuous"], row["scratch"]
            print(f"[continuous_bench] round {number}/{args.rounds}: continuous "
                  f"{c['seconds']:.1f} s, from scratch {s['seconds']:.1f} s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    total = summary(rows)
    show(rows, total)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "machine": f"{platform.machine()} {os.cpu_count()} cpu", "args": vars(args),
        "rounds": rows, "summary": total}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
