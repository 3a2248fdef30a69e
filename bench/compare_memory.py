"""Resident memory of one process measuring replica pairs as `steadyrank compare` does.

    python bench/compare_memory.py [--rows 200000] [--pairs 4] [--config configs/criteo-relu-2.toml]
                                   [--out FILE]

Data: the streaming benchmark's Criteo-shaped draw of ``--rows`` rows (bench/out, generated
once). For each pair: both replicas trained and exported (``compare.replica``), loaded, and
measured (``replica_pair_metrics``: PD, accuracy, the breakdown with its part swaps); then
the process's RSS after a garbage collection. TensorFlow never frees a loaded SavedModel's
variables (tensorflow/tensorflow#40171), so RSS grows with the exports a process loads:
this prints how much a pair costs. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import tempfile
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from stream_bench import dataset  # noqa: E402  (the streaming benchmark's draw)

from steadyrank.model import config as cfg  # noqa: E402
from steadyrank.model.data.splits import prepare_data  # noqa: E402
from steadyrank.model.evaluation import compare  # noqa: E402
from steadyrank.model.evaluation.pairs import replica_pair_metrics  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def rss_mib() -> float:
    """This process's resident memory, MiB (Linux /proc)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> int:
    """Runs the benchmark; prints a table and writes JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--config", default=str(REPO / "configs" / "criteo-relu-2.toml"))
    parser.add_argument("--out", default=str(REPO / "bench" / "results"
                                             / "compare_memory.json"))
    args = parser.parse_args()
    if args.pairs < 2 or args.rows < 1000:
        parser.error("--pairs must be >= 2 and --rows >= 1000")
    folder, _ = dataset(args.rows)
    config = cfg.load(args.config, [f"data.train=[\"{folder}/*.parquet\"]"])
    prepared = prepare_data(config, log=lambda _: None)
    quiet = lambda _: None  # noqa: E731
    after = [rss_mib()]
    print(f"prepared: {after[0]:,.0f} MiB", flush=True)
    with tempfile.TemporaryDirectory() as work:
        for p in range(args.pairs):
            (a, _), (b, _) = (compare.replica(config, (2 * p + r, 2 * p + r),
                                              Path(work) / f"{p}-{r}", prepared, "eval", quiet)
                              for r in (1, 2))
            replica_pair_metrics(a, b, prepared, None, 10)
            del a, b
            gc.collect()
            after.append(rss_mib())
            print(f"pair {p + 1}: {after[-1]:,.0f} MiB (+{after[-1] - after[-2]:,.0f})",
                  flush=True)
    per_pair = (after[-1] - after[1]) / (args.pairs - 1)  # the first pair warms up
    print(f"growth per pair after the first: {per_pair:,.0f} MiB")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "command": f"python bench/compare_memory.py --rows {args.rows} --pairs {args.pairs}",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "config": config.to_dict(), "rss_mib": after, "growth_per_pair_mib": per_pair},
        indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
