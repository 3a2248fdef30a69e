"""Memory per model-version load: TensorFlow's own SavedModel loader against the server's.

    python bench/load_leak.py [--loads 160] [--every 40] [--models DIR] [--json FILE]

Loads the latest version of ``ml`` (the models of ``bench/serve_bench.py``, trained once
into bench/out/serve/models unless ``--models`` points elsewhere) over and over in one
process, dropping each copy before the next, and samples the process RSS. Two paths, each in
its own fresh process so that one does not inherit the other's heap:

- ``tf``: bare ``tf.saved_model.load`` (the op library registered first);
- ``server``: ``reader.load`` plus a Rank-sized score, what the server does per version.

It shows how much of the server's RSS growth across many version switches (the 10-minute
soak, tests/service/test_soak.py, switches every 4 s) is TensorFlow's own per-load cost.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_bench import REPO, ensure_models  # noqa: E402

CHILD = """
import gc, json, os, sys
import numpy as np
sys.path.insert(0, "bench")
from serve_bench import rss_mb
from steadyrank.model.artifact import reader
from steadyrank.ops import load_library
import tensorflow as tf

path, mode, loads, every = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
load_library()
ids = np.arange(1, 101, dtype=np.int64)
samples = []
for i in range(loads + 1):
    if mode == "tf":
        m = tf.saved_model.load(path)
    else:
        m = reader.load(path)
        m.score_pairs(ids, ids)
    del m
    gc.collect()
    if i % every == 0:
        samples.append([i, rss_mb(os.getpid())])
print(json.dumps(samples))
"""


def run_path(path: Path, mode: str, loads: int, every: int) -> list[list[float]]:
    """[[loads done, RSS MB], ...] of one fresh process loading ``path`` ``loads`` times."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_USE_LEGACY_KERAS": "1"}
    out = subprocess.run([sys.executable, "-c", CHILD, str(path), mode, str(loads),
                          str(every)], check=True, capture_output=True, text=True, cwd=REPO,
                         env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    """Runs both paths, prints a table of RSS by loads and the growth per load, writes JSON."""
    from steadyrank.model.artifact import layout

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", type=int, default=160)
    parser.add_argument("--every", type=int, default=40)
    parser.add_argument("--models", type=Path, default=REPO / "bench/out/serve/models")
    parser.add_argument("--json", type=Path, default=REPO / "bench/results/load_leak.json")
    args = parser.parse_args(argv)
    base = ensure_models(args.models) / "ml"
    path = layout.version_folders(base)[max(layout.versions(base))]
    results = {mode: run_path(path, mode, args.loads, args.every) for mode in ("tf", "server")}
    print(f"| loads | {' | '.join(f'{m} RSS MB' for m in results)} |")
    print(f"|---|{'---|' * len(results)}")
    for row in range(len(results["tf"])):
        cells = " | ".join(f"{results[m][row][1]:.0f}" for m in results)
        print(f"| {results['tf'][row][0]} | {cells} |")
    per_load = {m: (s[-1][1] - s[1][1]) / (s[-1][0] - s[1][0]) for m, s in results.items()}
    print("growth per load after the first sample: "
          + ", ".join(f"{m} {v:.3f} MB" for m, v in per_load.items()))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "machine": f"{platform.node()} ({os.cpu_count()} cpus)", "model": str(path),
        "loads": args.loads, "samples": results, "mb_per_load": per_load}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
