"""Serving benchmark: the batching server against a naive one, side by side in one run.

    python bench/serve_bench.py [--repeats 3] [--duration 10] [--json FILE]
    python bench/serve_bench.py --schema criteo --modes batched,naive --no-c1

With ``--schema criteo`` the model is a Criteo-shaped click model (``data synth --schema
criteo``, 200,000 rows as Criteo TSV, configs/smelu.toml's network, seeds 1 and 2 as
``clicks`` and ``clicks-b``) and the load is ``Predict`` on ``serving_default`` with
``--candidates`` random rows per request (its 39 inputs drawn from the schema): the generic
batcher's gain on a model with many inputs and no ids.

Trains the MovieLens SmeLU replicas once (configs/smelu.toml, seeds 1 and 2) into
bench/out/serve/models/{ml,ml-b} unless ``--models`` points at a model base folder. Each
repeat starts ``steadyrank serve`` once per mode, in rotating order, and drives it with the
``loadtest`` client: Rank over 100 random candidates at concurrency 32. Modes:

- ``batched``: the default server with shadow scoring off (``--shadow-rate 0``);
- ``naive``: ``--no-batching`` (one model call per request), shadow scoring off;
- ``shadow``: batched with ``--shadow-rate 0.1`` (a tenth of requests also scored by ml-b).

At concurrency 1 it compares the batching server's p50 with calling the ``rank`` signature
in this process. Reports medians over repeats of the per-repeat ratios.

Goals: issue 5: throughput >= 3x naive at concurrency 32; p99 < 25 ms there; at
concurrency 1, served p50 <= 1.5 x (in-process p50 + 1 ms). Issue 6: shadow throughput
>= 0.9x batched.
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


MODES = {"batched": ["--shadow-rate", "0"],
         "naive": ["--no-batching", "--shadow-rate", "0"],
         "shadow": ["--shadow-rate", "0.1"]}


def ensure_models(base: Path, schema: str = "movielens") -> Path:
    """SmeLU replicas under ``base/NAME`` (seed 1) and ``base/NAME-b`` (seed 2): MovieLens
    (``ml``), or Criteo-shaped (``clicks``, from generated Criteo TSV)."""
    from steadyrank.model.artifact import layout

    cli = [sys.executable, "-m", "steadyrank.cli"]
    extra: list[str] = []
    if schema == "criteo":
        data = base.parent / "criteo-tsv"
        if not data.exists():
            subprocess.run([*cli, "data", "synth", "--schema", "criteo", "--format", "criteo",
                            "--rows", "200000", "--out", str(data)], check=True, cwd=REPO)
        extra = ["--set", "data.format=criteo", "--set", f"data.train=['{data}/*.tsv']",
                 "--set", "model.task=binary", "--set", "train.epochs=1",
                 "--set", "train.batch_size=1024"]
    name = model_name(schema)
    for replica, seed in ((name, 1), (f"{name}-b", 2)):
        if layout.versions(base / replica):
            continue
        subprocess.run([*cli, "train", "--config", str(REPO / "configs" / "smelu.toml"),
                        "--seed", str(seed), "--export-dir", str(base / replica),
                        "--checkpoint-dir", str(base.parent / f"ckpt-{replica}"), *extra],
                       check=True, cwd=REPO)
    return base


def model_name(schema: str) -> str:
    """The served model's name for a benchmark schema."""
    return "clicks" if schema == "criteo" else "ml"


class Served:
    """``steadyrank serve`` in a subprocess on a free port."""

    def __init__(self, base: Path, flags: list[str], log: Path, pin: str | None = None) -> None:
        """``pin``: CPUs for ``taskset -c`` (the server only, not the client)."""
        self.log = log
        if "--workers" not in flags:  # the single-process server these numbers describe
            flags = ["--workers", "1", *flags]
        with open(log, "w") as out:
            self.proc = subprocess.Popen(
                [*(["taskset", "-c", pin] if pin else []),
                 sys.executable, "-m", "steadyrank.cli", "serve", "--model-base-path",
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

    from steadyrank.model.artifact import reader

    fn = reader.load(base / "ml").module.signatures["rank"]
    times = []
    for i in range(reps + 20):
        request = pool[i % len(pool)]
        started = time.perf_counter()
        fn(user_id=tf.constant(request.user_id, tf.int64),
           item_ids=tf.constant(np.asarray(request.candidate_item_ids, np.int64)))
        if i >= 20:
            times.append(time.perf_counter() - started)
    return float(np.median(times))


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def server_rss(served: Served) -> dict[str, float]:
    """RSS of the server process and, under a supervisor, of each worker."""
    from steadyrank.service.serve.supervisor import worker_pids

    out = {"main": rss_mb(served.proc.pid)}
    for i, pid in enumerate(worker_pids(served.proc.pid)):
        out[f"worker{i}"] = rss_mb(pid)
    return out


def measure(base: Path, flags: list[str], concurrency: int, duration: float, pool: list,
            log: Path, processes: int = 1, pin: str | None = None, model: str = "ml") -> dict:
    """One server, one warm-up, one measured load test (from ``processes`` client
    processes), and the server's memory after it."""
    from steadyrank.service import client

    served = Served(base, flags, log, pin)
    try:
        client.parallel_loadtest(served.address, model, concurrency, 2.0, processes,
                                 warmup=0.5, pool=pool)
        result = client.parallel_loadtest(served.address, model, concurrency, duration,
                                          processes, warmup=0.5, pool=pool)
        memory = server_rss(served)
    finally:
        served.stop()
    return {**result.to_dict(), "rss_mb": memory}


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmark; prints a table and writes JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=None,
                        help="model base folder (default bench/out/serve[-criteo]/models)")
    parser.add_argument("--schema", default="movielens", choices=["movielens", "criteo"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--candidates", type=int, default=100,
                        help="candidates per Rank, or rows per Predict for criteo")
    parser.add_argument("--modes", default="batched,naive,shadow",
                        help=f"comma-separated, from {', '.join(MODES)} (batched required)")
    parser.add_argument("--no-c1", action="store_true", help="skip the concurrency-1 part")
    parser.add_argument("--json", default=None,
                        help="default bench/results/serve_bench[_criteo].json")
    args = parser.parse_args(argv)
    suffix = "-criteo" if args.schema == "criteo" else ""
    args.models = args.models or str(REPO / "bench" / "out" / f"serve{suffix}" / "models")
    args.json = args.json or str(REPO / "bench" / "results" /
                                 f"serve_bench{suffix.replace('-', '_')}.json")
    if args.schema == "criteo":
        args.no_c1 = True  # the in-process reference calls ``rank``, which it has not
    name = model_name(args.schema)
    modes = {m: MODES[m] for m in args.modes.split(",")}
    if "batched" not in modes:
        parser.error("--modes must include batched (the reference of every ratio)")
    base = ensure_models(Path(args.models), args.schema)
    logs = Path(args.models).parent
    logs.mkdir(parents=True, exist_ok=True)


    from steadyrank.service import client

    probe = Served(base, [], logs / "probe.log")
    try:
        with client.channel(probe.address) as chan:
            pool = client.request_pool(chan, name, args.candidates, 10)
    finally:
        probe.stop()

    rows: dict[str, list[dict]] = {mode: [] for mode in [*modes, "batched_c1"]}
    inproc = []
    for repeat in range(args.repeats):
        names = list(modes)
        order = names[repeat % len(names):] + names[:repeat % len(names)]
        for mode in order:
            row = measure(base, modes[mode], args.concurrency, args.duration, pool,
                          logs / f"{mode}.log", model=name)
            rows[mode].append(row)
            print(f"repeat {repeat + 1} {mode:8s} c={args.concurrency}: "
                  f"{row['throughput_rps']:7.1f} req/s, p50 {row['p50_ms']:.2f} ms, "
                  f"p99 {row['p99_ms']:.2f} ms, errors {row['errors']}", flush=True)
        if args.no_c1:
            continue
        row = measure(base, MODES["batched"], 1, args.duration, pool, logs / "c1.log")
        rows["batched_c1"].append(row)
        inproc.append(in_process_p50(base, pool, 300))
        print(f"repeat {repeat + 1} c=1: served p50 {row['p50_ms']:.2f} ms, in-process p50 "
              f"{inproc[-1] * 1000:.2f} ms", flush=True)

    def med(mode: str, key: str) -> float:
        return float(np.median([r[key] for r in rows[mode]]))

    summary: dict = {"errors": sum(r["errors"] for mode in rows for r in rows[mode])}
    goals: dict = {}
    for mode in modes:
        summary[f"{mode}_rps"] = med(mode, "throughput_rps")
        summary[f"{mode}_p50_ms"] = med(mode, "p50_ms")
        summary[f"{mode}_p99_ms"] = med(mode, "p99_ms")
        if mode != "batched":
            ratios = [r["throughput_rps"] / b["throughput_rps"]
                      for r, b in zip(rows[mode], rows["batched"], strict=True)]
            summary[f"{mode}_over_batched_ratios"] = ratios
            summary[f"{mode}_over_batched_median"] = float(np.median(ratios))
    if "naive" in modes:
        summary["batching_speedup_median"] = 1 / summary["naive_over_batched_median"]
        goals["throughput_3x_naive"] = summary["batching_speedup_median"] >= 3.0
    goals["p99_under_25ms"] = summary["batched_p99_ms"] < 25.0
    if "shadow" in modes:
        goals["shadow_0.1_at_least_0.9x"] = summary["shadow_over_batched_median"] >= 0.9
    if inproc:
        c1_budget = 1.5 * (float(np.median(inproc)) * 1000 + 1.0)
        summary.update(c1_served_p50_ms=med("batched_c1", "p50_ms"),
                       c1_in_process_p50_ms=float(np.median(inproc)) * 1000,
                       c1_budget_ms=c1_budget)
        goals["c1_p50_within_budget"] = summary["c1_served_p50_ms"] <= c1_budget
    summary["goals"] = goals
    print()
    print(f"{'':22s}" + "".join(f"{m:>12s}" for m in modes))
    for key, label in (("rps", "throughput (req/s)"), ("p50_ms", "p50 (ms)"),
                       ("p99_ms", "p99 (ms)")):
        print(f"{label:22s}" + "".join(f"{summary[f'{m}_{key}']:12.2f}" for m in modes))
    for mode in modes:
        if mode != "batched":
            print(f"{mode} / batched throughput (median of per-repeat ratios): "
                  f"{summary[f'{mode}_over_batched_median']:.3f}")
    if inproc:
        print(f"c=1: served p50 {summary['c1_served_p50_ms']:.2f} ms vs budget "
              f"{summary['c1_budget_ms']:.2f} ms (1.5 x (in-process "
              f"{summary['c1_in_process_p50_ms']:.2f} + 1))")
    print("goals:", json.dumps(goals))
    record = {"command": "python bench/serve_bench.py " + " ".join(argv or sys.argv[1:]),
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
              "settings": vars(args), "summary": summary, "runs": rows,
              "in_process_p50_s": inproc}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
