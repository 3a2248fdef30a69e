"""Training on Criteo-shaped Parquet: streamed against held in memory, two batch sizes, and
the peak memory of a 10^7-row run.

    python bench/stream_bench.py [--rows 1000000] [--big-rows 10000000] [--repeats 3]
                                 [--batches 256,4096] [--skip-rss] [--out FILE]

Data: ``steadyrank data synth --schema criteo`` (Parquet shards of 10^6 rows, generated into
bench/out once; the generation time is reported). The model: the Criteo preset schema
(13 log1p counts, 26 categorical ids with a vocabulary), ``configs/smelu.toml``'s network
(SmeLU, DCN-v2, [128, 64, 32]), one epoch in time order with a 10,000-row shuffle window.

1. Throughput: for each batch size and repeat, the same ``--rows`` rows train once held in
   memory (``data.load = "memory"``) and once streamed (``"stream"``), in turn, so machine
   noise hits both alike; examples/s is the trainer's own (the epoch's rows over its fit
   time; the statistics pass and holding the rows are not in it). Medians over repeats, and
   the streamed/in-memory ratio of the medians.
2. Peak memory: ``steadyrank train`` on ``--big-rows`` rows, streamed, batch 4096, in a child
   process; its peak RSS (its ``VmHWM``, polled to its end), against the 3 GiB bound.

Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from steadyrank.model import config as cfg  # noqa: E402
from steadyrank.model.data import criteo_synth  # noqa: E402
from steadyrank.model.data.presets import criteo_schema  # noqa: E402
from steadyrank.model.data.splits import prepare_data  # noqa: E402
from steadyrank.model.training.trainer import train  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
RSS_BOUND_GIB = 3.0


def dataset(rows: int) -> tuple[Path, float]:
    """The Criteo-shaped Parquet folder of ``rows`` rows (generated once) and the seconds
    its generation took (0 when it was there)."""
    folder = OUT / f"criteo-{rows}"
    if (folder / "manifest.json").exists():
        return folder, 0.0
    started = time.perf_counter()
    criteo_synth.generate(criteo_synth.CriteoSpec(rows=rows, seed=11), folder, force=True)
    return folder, time.perf_counter() - started


def config(folder: Path, batch: int, load: str) -> cfg.Config:
    """The Criteo preset on ``folder``'s Parquet shards."""
    return cfg.from_dict({
        "data": {"format": "parquet", "train": [str(folder / "*.parquet")],
                 "time_column": "ts", "split": "time", "load": load,
                 "memory_budget_mb": 16384},
        "label": {"column": "label", "task": "binary"},
        "features": [f.to_dict() for f in criteo_schema().features],
        "model": {"embedding_dim": 16, "deep_layers": [128, 64, 32], "activation": "smelu",
                  "smelu_beta": 2.0, "layer_norm": True},
        "train": {"epochs": 1, "batch_size": batch, "learning_rate": 0.002,
                  "shuffle": "window:10000"}})


def throughput(folder: Path, batches: list[int], repeats: int) -> dict:
    """examples/s by batch size and load, each a list over repeats."""
    runs: dict = {}
    prepared = None
    for batch in batches:
        for repeat in range(repeats):
            for load in ("memory", "stream"):
                c = config(folder, batch, load)
                if prepared is None:
                    prepared = prepare_data(c)
                # The same rows and statistics, read another way.
                result = train(c, 1, replace(prepared, config=c), log=lambda _: None)
                runs.setdefault(str(batch), {}).setdefault(load, []).append(
                    result.examples_per_second)
                print(f"batch {batch} repeat {repeat + 1}/{repeats} {load}: "
                      f"{result.examples_per_second:,.0f} ex/s", flush=True)
    return runs


def peak_rss(folder: Path) -> dict:
    """``steadyrank train`` streamed over ``folder`` in a child; its peak RSS and time."""
    config_path = OUT / "criteo-big.toml"
    c = config(folder, 4096, "stream").to_dict()
    lines = ["[data]", *(f"{k} = {json.dumps(v)}" for k, v in c["data"].items()),
             "[label]", *(f"{k} = {json.dumps(v)}" for k, v in c["label"].items()),
             "[model]", *(f"{k} = {json.dumps(v)}" for k, v in c["model"].items()),
             "[train]", *(f"{k} = {json.dumps(v)}" for k, v in c["train"].items())]
    for f in c["features"]:
        lines += ["[[features]]", *(f"{k} = {json.dumps(v)}" for k, v in f.items())]
    config_path.write_text("\n".join(lines) + "\n")
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen([sys.executable, "-m", "steadyrank.cli", "train", "--config",
                                  str(config_path), "--export-dir",
                                  str(OUT / "criteo-big-model"), "--checkpoint-dir",
                                  str(OUT / "criteo-big-ckpt")], stderr=err,
                                 stdout=subprocess.DEVNULL)
        # The child's own high-water mark (VmHWM restarts at exec, unlike ru_maxrss, which
        # also counts the fork's copy of this process before the exec), read to the end.
        peak_kib = 0
        while child.poll() is None:
            peak_kib = max(peak_kib, _hwm_kib(child.pid))
            time.sleep(0.5)
        err.seek(0)
        log = err.read()
    seconds = time.perf_counter() - started
    if child.returncode != 0:
        raise RuntimeError(log[-3000:])
    return {"peak_rss_gib": peak_kib / 2**20, "seconds": seconds,
            "log_tail": log.strip().splitlines()[-4:]}


def _hwm_kib(pid: int) -> int:
    """A process's peak resident memory so far (``VmHWM``), KiB; 0 once it has gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return next((int(line.split()[1]) for line in f if line.startswith("VmHWM:")), 0)
    except OSError:
        return 0


def main() -> int:
    """Runs the benchmark; prints a table and writes JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--big-rows", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batches", default="256,4096")
    parser.add_argument("--skip-rss", action="store_true")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"
                                             / "stream_bench.json"))
    args = parser.parse_args()
    folder, made = dataset(args.rows)
    runs = throughput(folder, [int(b) for b in args.batches.split(",")], args.repeats)
    table = {}
    print(f"\n{'batch':>6} {'in memory ex/s':>15} {'streamed ex/s':>14} {'ratio':>6}")
    for batch, loads in runs.items():
        memory, stream = (statistics.median(loads[k]) for k in ("memory", "stream"))
        table[batch] = {"memory": memory, "stream": stream, "ratio": stream / memory}
        print(f"{batch:>6} {memory:>15,.0f} {stream:>14,.0f} {stream / memory:>6.2f}")
    result = {"rows": args.rows, "generation_seconds": made, "runs": runs, "medians": table,
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform()}}
    if not args.skip_rss:
        big, big_made = dataset(args.big_rows)
        result["big"] = {"rows": args.big_rows, "generation_seconds": big_made,
                         **peak_rss(big)}
        print(f"\n{args.big_rows:,} rows streamed: peak RSS "
              f"{result['big']['peak_rss_gib']:.2f} GiB (bound {RSS_BOUND_GIB} GiB), "
              f"{result['big']['seconds']:.0f} s; generated in {big_made:.0f} s")
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
