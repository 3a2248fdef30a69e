"""Distributed training on a local cluster: throughput with 1 vs 2 workers, and memory per
parameter server for a 10^6 x 64 embedding table sharded 1 vs 2 ways.

    python bench/dist_bench.py [--repeats 3] [--rows 200000] [--json FILE]

Throughput: ``steadyrank cluster --ps 2 --workers W -- train`` on synthetic data (1 epoch,
the training examples/s the trainer records), W = 1 and 2 in alternating order per repeat.
On a 2-core machine this is a functional check that both run, not a speedup claim: the
chief, the workers and the parameter servers share the same two cores.

Memory: a cluster of P parameter servers (P = 1, 2) and one worker; the chief builds a
10^6 x 64 float32 Keras Embedding table (256 MB) under ParameterServerStrategy with the
trainer's partitioner, and the resident memory (VmRSS) of every parameter server is read
before and after. The table's initializer is partition-aware, so each shard is created on
its own parameter server (a plain tensor initial value would be built whole on the chief and
sent over).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MiB (from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def throughput(data: Path, workers: int, work: Path) -> float:
    """Training examples/s of one epoch on a 2-PS cluster with ``workers`` workers."""
    from steadyrank.model.artifact import reader

    base = work / f"models-w{workers}-{time.monotonic_ns()}"
    subprocess.run(
        [sys.executable, "-m", "steadyrank.cli", "cluster", "--ps", "2", "--workers",
         str(workers), "--", "train", "--config", str(REPO / "configs" / "smelu.toml"),
         "--export-dir", str(base / "ml"), "--checkpoint-dir", str(base / "ckpt"),
         "--set", "data.dataset=synthetic", "--set", f"data.data_dir={data}",
         "--set", "train.epochs=1", "--set", "train.batch_size=1024",
         "--set", "model.embedding_dim=16", "--set", "model.deep_layers=[64, 32]"],
        check=True, cwd=REPO, capture_output=True)
    return float(reader.load(base / "ml").manifest["training"]["examples_per_second"])


MEMORY_CHIEF = """
import json, os, sys
import tf_keras as keras
from steadyrank.model.training.distributed import make_strategy
strategy = make_strategy("parameter-server")
with strategy.scope():
    # Built as the model builds its tables: a Keras Embedding whose initializer is
    # partition-aware, so each parameter server initialises only its own shard.
    layer = keras.layers.Embedding(1_000_000, 64, name="table")
    layer.build((None,))
table = layer.embeddings
parts = getattr(table, "variables", [table])
print(json.dumps([int(p.shape[0]) for p in parts]), flush=True)
sys.stdin.readline()  # hold the variable until the parent has measured
"""


def memory(ps: int) -> dict:
    """RSS of each parameter server before and after creating the sharded table."""
    from steadyrank.model.training import local_cluster as cluster

    spec = cluster.cluster_spec(ps=ps, workers=1)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    nodes = {}
    for kind in ("ps", "worker"):
        for i in range(len(spec[kind])):
            nodes[(kind, i)] = subprocess.Popen(
                [sys.executable, "-m", "steadyrank.cli", "cluster-node"],
                env={**env, "TF_CONFIG": cluster.tf_config(spec, kind, i)},
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        cluster._wait_listening([a for k in ("ps", "worker") for a in spec[k]],
                                list(nodes.values()), 120)
        time.sleep(2)
        before = [rss_mb(nodes[("ps", i)].pid) for i in range(ps)]
        chief = subprocess.Popen([sys.executable, "-c", MEMORY_CHIEF], text=True,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL,
                                 env={**env, "TF_CONFIG": cluster.tf_config(spec, "chief", 0)})
        rows = json.loads(chief.stdout.readline())
        time.sleep(1)
        after = [rss_mb(nodes[("ps", i)].pid) for i in range(ps)]
        chief.stdin.write("\n")
        chief.stdin.flush()
        chief.wait(60)
    finally:
        for node in nodes.values():
            node.terminate()
        for node in nodes.values():
            node.wait(30)
    return {"ps": ps, "shard_rows": rows, "rss_before_mb": before, "rss_after_mb": after,
            "table_mb_per_ps": [a - b for a, b in zip(after, before, strict=True)]}


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmark; prints a table and writes JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--json", default=str(REPO / "bench" / "results" / "dist_bench.json"))
    args = parser.parse_args(argv)
    from steadyrank.model.data import synth

    work = Path(tempfile.mkdtemp(prefix="steadyrank-dist-bench-"))
    data = synth.generate(synth.SynthSpec(users=20_000, items=100_000, rows=args.rows,
                                          seed=3), work / "data")
    runs: dict[int, list[float]] = {1: [], 2: []}
    for repeat in range(args.repeats):
        for workers in ((1, 2) if repeat % 2 == 0 else (2, 1)):
            runs[workers].append(throughput(data, workers, work))
            print(f"repeat {repeat + 1}: {workers} worker(s): {runs[workers][-1]:,.0f} "
                  "examples/s", flush=True)
    mem = [memory(ps) for ps in (1, 2)]
    for m in mem:
        print(f"{m['ps']} PS: shard rows {m['shard_rows']}, table MiB per PS "
              f"{[round(x) for x in m['table_mb_per_ps']]}", flush=True)
    ratios = [b / a for a, b in zip(runs[1], runs[2], strict=True)]
    summary = {"examples_per_second_1_worker": float(np.median(runs[1])),
               "examples_per_second_2_workers": float(np.median(runs[2])),
               "ratio_2_over_1_median": float(np.median(ratios)), "memory": mem}
    print()
    print(f"{'workers':>8}{'examples/s (median)':>22}")
    for w in (1, 2):
        print(f"{w:>8}{np.median(runs[w]):>22,.0f}")
    print(f"2 / 1 workers (median of per-repeat ratios): {summary['ratio_2_over_1_median']:.2f}")
    record = {"command": "python bench/dist_bench.py " + " ".join(argv or sys.argv[1:]),
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
              "settings": vars(args), "summary": summary, "runs": runs}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
