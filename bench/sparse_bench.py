"""Embedding optimizers against table size: examples/s and peak RSS of the Criteo-shaped
model, dense Adam and each row-sparse optimizer side by side in one run.

    python bench/sparse_bench.py [--rows 200000] [--repeats 3]
                                 [--sizes 26000,900000,2600000,26000000]
                                 [--optimizers adam,adagrad,lazy_adam,ftrl,sgd] [--out FILE]

Data: ``steadyrank data synth --schema criteo`` Parquet (the streaming benchmark's draw of
``--rows`` rows in bench/out, generated once). Model: the study's network (16-wide
embeddings, DCN-v2 with a 128-64-32 tower, LayerNorm, SmeLU beta 2), batch 4096, one
time-ordered streamed pass with a 10,000-row shuffle window over the rows before the time
split; each of the 26 categorical features gets ``hash_buckets = SIZE / 26``, so SIZE is the
rows in all tables. At the largest size Polyak (last 80%) and EMA (0.999) averaging run too,
for each sparse optimizer named first (Adagrad by default).

Each run is its own process (so its peak RSS is its own); within a repeat every
(size, optimizer) runs in turn, so machine noise hits all alike. examples/s is the
trainer's (the pass's rows over its fit time; building the tables and the statistics pass
are not in it). Reported: medians over repeats, each run's ratio to the same optimizer at
the smallest size and to dense Adam at the same size (medians of the per-repeat ratios),
and the peak RSS against the tables' and slots' bytes. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parent.parent
CATEGORICAL = 26
LEARNING_RATES = {"adam": 0.0, "adagrad": 0.05, "lazy_adam": 0.002, "ftrl": 0.05, "sgd": 0.5}


def run_config(rows: int, size: int, optimizer: str, averaging: str):
    """The benchmark's config for one run."""
    from stream_bench import config as criteo_config
    from stream_bench import dataset

    from steadyrank.model import config as cfg

    folder, _ = dataset(rows)
    base = criteo_config(folder, 4096, "stream")
    features = tuple(replace(f, hash_buckets=size // CATEGORICAL, min_count=1)
                     if f.kind == "categorical" else f for f in base.features)
    train = replace(base.train, weight_averaging=averaging,
                    embeddings=cfg.EmbeddingTrainConfig(
                        optimizer=optimizer, learning_rate=LEARNING_RATES[optimizer]))
    return cfg.validate(replace(base, features=features, train=train))


def one(rows: int, size: int, optimizer: str, averaging: str) -> dict:
    """Trains one run in this process; its examples/s, tables' bytes and peak RSS."""
    from steadyrank.model.data.splits import prepare_data
    from steadyrank.model.training.footprint import table_costs
    from steadyrank.model.training.trainer import train

    config = run_config(rows, size, optimizer, averaging)
    prepared = prepare_data(config)
    costs = table_costs(config, prepared.schema, prepared.stats)
    result = train(config, 1, prepared, log=lambda _: None)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"examples_per_second": result.examples_per_second, "seconds": result.seconds,
            "peak_rss_bytes": peak,
            "table_bytes": sum(c.weight_bytes for c in costs),
            "slot_bytes": sum(c.slot_bytes for c in costs),
            "table_rows": sum(c.rows for c in costs)}


def main() -> int:
    """Runs the benchmark; prints a table and writes JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", default="26000,900000,2600000,26000000")
    parser.add_argument("--optimizers", default="adam,adagrad,lazy_adam,ftrl,sgd")
    parser.add_argument("--averaged", default="adagrad",
                        help="sparse optimizers also run with Polyak and EMA at the largest size")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "sparse_bench.json"))
    parser.add_argument("--one", help=argparse.SUPPRESS)  # SIZE,OPTIMIZER,AVERAGING
    args = parser.parse_args()
    if args.one:
        size, optimizer, averaging = args.one.split(",")
        print(json.dumps(one(args.rows, int(size), optimizer, averaging)))
        return 0
    sizes = [int(s) for s in args.sizes.split(",")]
    optimizers = args.optimizers.split(",")
    if args.repeats < 1 or args.rows < 10_000 or any(s < CATEGORICAL for s in sizes):
        parser.error("--repeats must be >= 1, --rows >= 10000, each size >= 26")
    runs = [(s, o, "none") for s in sizes for o in optimizers]
    runs += [(sizes[-1], o, avg) for o in args.averaged.split(",") if o
             for avg in ("polyak:0.8", "ema:0.999")]
    from stream_bench import dataset

    dataset(args.rows)  # generated once, before anything is timed
    results: dict[str, list[dict]] = {}
    for repeat in range(args.repeats):
        for size, optimizer, averaging in runs:
            key = f"{size},{optimizer},{averaging}"
            done = subprocess.run(
                [sys.executable, __file__, "--rows", str(args.rows), "--one", key],
                capture_output=True, text=True, cwd=REPO)
            if done.returncode != 0:
                print(done.stderr[-3000:], file=sys.stderr)
                return 1
            record = json.loads(done.stdout.strip().splitlines()[-1])
            results.setdefault(key, []).append(record)
            print(f"repeat {repeat + 1}/{args.repeats} {size:>11,} rows {optimizer:9s} "
                  f"{averaging:10s} {record['examples_per_second']:9,.0f} ex/s, peak RSS "
                  f"{record['peak_rss_bytes'] / 2**30:.2f} GiB", flush=True)
    summary = summarize(results, sizes, optimizers)
    print_table(summary)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "benchmark": "sparse_bench", "command": " ".join(sys.argv), "rows": args.rows,
        "repeats": args.repeats, "machine": {"cpus": os.cpu_count(), "python":
                                             platform.python_version(),
                                             "platform": platform.platform()},
        "when": time.strftime("%Y-%m-%d %H:%M:%S"), "runs": results, "summary": summary},
        indent=2) + "\n")
    print(f"wrote {out}")
    return 0


def summarize(results: dict[str, list[dict]], sizes: list[int], optimizers: list[str]
              ) -> list[dict]:
    """Per run: median examples/s, median ratios (to its smallest size, to dense Adam at
    its size, to its unaveraged run), peak RSS and the tables' bytes."""
    def per_repeat(key: str) -> list[float]:
        return [r["examples_per_second"] for r in results[key]]

    out = []
    for key, records in results.items():
        size, optimizer, averaging = key.split(",")
        speeds = per_repeat(key)
        row = {"size": int(size), "optimizer": optimizer, "averaging": averaging,
               "examples_per_second": statistics.median(speeds),
               "peak_rss_gib": max(r["peak_rss_bytes"] for r in records) / 2**30,
               "tables_gib": records[0]["table_bytes"] / 2**30,
               "slots_gib": records[0]["slot_bytes"] / 2**30}
        ratios = {"vs_smallest": f"{sizes[0]},{optimizer},none",
                  "vs_dense_adam": f"{size},adam,none",
                  "vs_unaveraged": f"{size},{optimizer},none"}
        for name, other in ratios.items():
            if other in results and other != key:
                row[name] = statistics.median(
                    a / b for a, b in zip(speeds, per_repeat(other), strict=True))
        out.append(row)
    return out


def print_table(summary: list[dict]) -> None:
    """The summary as a table."""
    print(f"\n{'rows':>11s} {'optimizer':9s} {'averaging':10s} {'ex/s':>9s} "
          f"{'x smallest':>10s} {'x adam':>7s} {'x unavg':>7s} {'RSS GiB':>8s} "
          f"{'tables+slots':>12s}")
    def ratio(r: dict, name: str) -> str:
        return f"{r[name]:.2f}" if name in r else "-"

    for r in summary:
        print(f"{r['size']:>11,} {r['optimizer']:9s} {r['averaging']:10s} "
              f"{r['examples_per_second']:9,.0f} {ratio(r, 'vs_smallest'):>10s} "
              f"{ratio(r, 'vs_dense_adam'):>7s} {ratio(r, 'vs_unaveraged'):>7s} "
              f"{r['peak_rss_gib']:8.2f} {r['tables_gib'] + r['slots_gib']:12.2f}")


if __name__ == "__main__":
    sys.exit(main())
