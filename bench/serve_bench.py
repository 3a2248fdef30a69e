"""Serving benchmark: the batching server against a naive one, side by side in one run.

    python bench/serve_bench.py [--repeats 3] [--duration 10] [--json FILE]

Trains the MovieLens SmeLU model once (configs/smelu.toml) into bench/out/serve/models/ml
unless ``--models`` points at a model base folder. Each repeat starts ``steadyrank serve``
twice, batching (the default) and ``--no-batching`` (one model call per request), in
alternating order, and drives each with the ``loadtest`` client: Rank over 100 random
candidates at concurrency 32. At concurrency 1 it compares the batching server's p50 with
calling the ``rank`` signature in this process. Reports medians over repeats.

Goals (issue 5): throughput >= 3x naive at concurrency 32; p99 < 25 ms there; at
concurrency 1, served p50 <= 1.5 x (in-process p50 + 1 ms).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def ensure_model(base: Path) -> Path:
    """A trained SmeLU MovieLens export under ``base/ml`` (trained here if missing)."""
    from steadyrank.model import export

    if export.versions(base / "ml"):
        return base
    subprocess.run([sys.executable, "-m", "steadyrank.cli", "train", "--config",
                    str(REPO / "configs" / "smelu.toml"), "--export-dir", str(base / "ml"),
                    "--checkpoint-dir", str(base.parent / "ckpt")], check=True, cwd=REPO)
    return base


class Served:
    """``steadyrank serve`` in a subprocess on a free port."""

    def __init__(self, base: Path, flags: list[str], log: Path) -> None:
        self.log = log
        with open(log, "w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "steadyrank.cli", "serve", "--model-base-path",
                 str(base), "--port", "0", "--metrics-port", "-1", "--host", "127.0.0.1",
                 "--log-level", "warning", *flags],
                stdout=out, stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        end = time.monotonic() + 180
        while time.monotonic() < end:
            found = re.search(r"gRPC on port (\d+)", log.read_text())
            if found:
                self.address = f"127.0.0.1:{found.group(1)}"
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError(f"server did not start:\n{log.read_text()[-2000:]}")

    def stop(self) -> None:
        """SIGTERM, and wait."""
        self.proc.terminate()
        self.proc.wait(timeout=60)


def in_process_p50(base: Path, pool: list, reps: int) -> float:
    """Median seconds of the ``rank`` signature called in this process, same requests."""
    import tensorflow as tf

    from steadyrank.model import export

    fn = export.load(base / "ml").module.signatures["rank"]
    times = []
    for i in range(reps + 20):
        request = pool[i % len(pool)]
        started = time.perf_counter()
        fn(user_id=tf.constant(request.user_id, tf.int64),
           item_ids=tf.constant(np.asarray(request.candidate_item_ids, np.int64)))
        if i >= 20:
            times.append(time.perf_counter() - started)
    return float(np.median(times))


def measure(base: Path, flags: list[str], concurrency: int, duration: float, pool: list,
            log: Path) -> dict:
    """One server, one warm-up, one measured load test."""
    from steadyrank.service import client

    served = Served(base, flags, log)
    try:
        client.loadtest(served.address, "ml", concurrency, 2.0, warmup=0.5, pool=pool)
        result = client.loadtest(served.address, "ml", concurrency, duration, warmup=0.5,
                                 pool=pool)
    finally:
        served.stop()
    return result.to_dict()


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmark; prints a table and writes JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=str(REPO / "bench" / "out" / "serve" / "models"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--json", default=str(REPO / "bench" / "results" /
                                             "serve_bench.json"))
    args = parser.parse_args(argv)
    base = ensure_model(Path(args.models))
    logs = Path(args.models).parent
    logs.mkdir(parents=True, exist_ok=True)

    from steadyrank.service import client

    probe = Served(base, [], logs / "probe.log")
    try:
        with client.channel(probe.address) as chan:
            stub = client.prediction_service_pb2_grpc.PredictionServiceStub(chan)
            pool = client.request_pool(stub, "ml", args.candidates, 10)
    finally:
        probe.stop()

    modes = {"batched": [], "naive": ["--no-batching"]}
    rows: dict[str, list[dict]] = {"batched": [], "naive": [], "batched_c1": []}
    inproc = []
    for repeat in range(args.repeats):
        order = list(modes) if repeat % 2 == 0 else list(reversed(modes))
        for mode in order:
            row = measure(base, modes[mode], args.concurrency, args.duration, pool,
                          logs / f"{mode}.log")
            rows[mode].append(row)
            print(f"repeat {repeat + 1} {mode:8s} c={args.concurrency}: "
                  f"{row['throughput_rps']:7.1f} req/s, p50 {row['p50_ms']:.2f} ms, "
                  f"p99 {row['p99_ms']:.2f} ms, errors {row['errors']}", flush=True)
        row = measure(base, [], 1, args.duration, pool, logs / "c1.log")
        rows["batched_c1"].append(row)
        inproc.append(in_process_p50(base, pool, 300))
        print(f"repeat {repeat + 1} c=1: served p50 {row['p50_ms']:.2f} ms, in-process p50 "
              f"{inproc[-1] * 1000:.2f} ms", flush=True)

    def med(mode: str, key: str) -> float:
        return float(np.median([r[key] for r in rows[mode]]))

    ratios = [b["throughput_rps"] / n["throughput_rps"]
              for b, n in zip(rows["batched"], rows["naive"], strict=True)]
    c1_budget = 1.5 * (float(np.median(inproc)) * 1000 + 1.0)
    summary = {
        "throughput_ratio_median": float(np.median(ratios)), "throughput_ratios": ratios,
        "batched_rps": med("batched", "throughput_rps"), "naive_rps": med("naive",
                                                                          "throughput_rps"),
        "batched_p50_ms": med("batched", "p50_ms"), "batched_p99_ms": med("batched", "p99_ms"),
        "naive_p99_ms": med("naive", "p99_ms"),
        "c1_served_p50_ms": med("batched_c1", "p50_ms"),
        "c1_in_process_p50_ms": float(np.median(inproc)) * 1000,
        "c1_budget_ms": c1_budget,
        "errors": sum(r["errors"] for mode in rows for r in rows[mode]),
    }
    summary["goals"] = {
        "throughput_3x_naive": summary["throughput_ratio_median"] >= 3.0,
        "p99_under_25ms": summary["batched_p99_ms"] < 25.0,
        "c1_p50_within_budget": summary["c1_served_p50_ms"] <= c1_budget,
    }
    print()
    print(f"{'':28s}{'batched':>12s}{'naive':>12s}")
    print(f"{'throughput (req/s)':28s}{summary['batched_rps']:12.1f}{summary['naive_rps']:12.1f}")
    print(f"{'p99 (ms)':28s}{summary['batched_p99_ms']:12.2f}{summary['naive_p99_ms']:12.2f}")
    print(f"throughput ratio (median of per-repeat ratios): "
          f"{summary['throughput_ratio_median']:.2f}x")
    print(f"c=1: served p50 {summary['c1_served_p50_ms']:.2f} ms vs budget "
          f"{c1_budget:.2f} ms (1.5 x (in-process {summary['c1_in_process_p50_ms']:.2f} + 1))")
    print("goals:", json.dumps(summary["goals"]))
    record = {"command": "python bench/serve_bench.py " + " ".join(argv or sys.argv[1:]),
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
              "settings": vars(args), "summary": summary, "runs": rows,
              "in_process_p50_s": inproc}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
