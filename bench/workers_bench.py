"""Serving on every core: ``serve --workers 1`` vs ``--workers N``, and batched Rank (16
queries per call) vs single-query calls, side by side in one run.

    python bench/workers_bench.py [--workers 2] [--repeats 3] [--duration 10]
                                  [--processes 2] [--json FILE]

Uses the models of ``bench/serve_bench.py`` (trained once into bench/out/serve/models unless
``--models``). Each repeat starts one server per mode, in rotating order, and drives it with
``steadyrank loadtest --processes P`` (P client processes sharing concurrency 32, Rank over
100 random candidates, k = 10). Modes:

- ``w1``: ``--workers 1`` (today's single process), single-query Rank;
- ``wN``: ``--workers N``, single-query Rank;
- ``w1_batch``, ``wN_batch``: the same servers, batched Rank of ``--queries`` users per call.

Shadow scoring is off in every mode (``--shadow-rate 0``). Reports medians over repeats of
the per-repeat ratios, p99s, and the resident memory of each server process after its load.
``--taskset CPUS`` pins the servers (not the clients) to those CPUs with taskset.

Goals (issue 20): wN throughput >= 1.5x w1 (N = 2); wN p99 < 25 ms; batched users/s >= 5x
single-query users/s at the same concurrency (reported for 1 and N workers).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_bench import REPO, Served, ensure_models, measure  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmark; prints a table and writes JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=str(REPO / "bench" / "out" / "serve" / "models"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--processes", type=int, default=2, help="load generator processes")
    parser.add_argument("--queries", type=int, default=16, help="users per batched call")
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--taskset", default=None, help="pin the servers to these CPUs")
    parser.add_argument("--json", default=str(REPO / "bench" / "results" /
                                             "workers_bench.json"))
    args = parser.parse_args(argv)
    base = ensure_models(Path(args.models))
    logs = Path(args.models).parent
    logs.mkdir(parents=True, exist_ok=True)


    from steadyrank.service import client

    probe = Served(base, ["--workers", "1"], logs / "probe.log")
    try:
        with client.channel(probe.address) as chan:
            single = client.request_pool(chan, "ml", args.candidates, 10)
            batched = client.request_pool(chan, "ml", args.candidates, 10,
                                          size=2000 * args.queries // 4, queries=args.queries)
    finally:
        probe.stop()
    n = f"w{args.workers}"
    modes = {"w1": (["--workers", "1"], single), n: (["--workers", str(args.workers)], single),
             "w1_batch": (["--workers", "1"], batched),
             f"{n}_batch": (["--workers", str(args.workers)], batched)}
    rows: dict[str, list[dict]] = {m: [] for m in modes}
    for repeat in range(args.repeats):
        names = list(modes)
        for mode in names[repeat % len(names):] + names[:repeat % len(names)]:
            flags, pool = modes[mode]
            row = measure(base, ["--shadow-rate", "0", *flags], args.concurrency,
                          args.duration, pool, logs / f"workers-{mode}.log", args.processes,
                          args.taskset)
            rows[mode].append(row)
            print(f"repeat {repeat + 1} {mode:9s}: {row['throughput_rps']:7.1f} req/s "
                  f"({row['users_per_s']:7.1f} users/s), p50 {row['p50_ms']:.2f} ms, "
                  f"p99 {row['p99_ms']:.2f} ms, errors {row['errors']}, rss "
                  + ", ".join(f"{k} {v:.0f} MiB" for k, v in row["rss_mb"].items()),
                  flush=True)

    def ratios(a: str, b: str, key: str) -> list[float]:
        return [x[key] / y[key] for x, y in zip(rows[a], rows[b], strict=True)]

    def med(mode: str, key: str) -> float:
        return float(np.median([r[key] for r in rows[mode]]))

    workers_ratios = ratios(n, "w1", "throughput_rps")
    batch_ratios = ratios("w1_batch", "w1", "users_per_s")
    batch_ratios_n = ratios(f"{n}_batch", n, "users_per_s")
    summary = {
        "errors": sum(r["errors"] for m in rows for r in rows[m]),
        **{f"{m}_{k}": med(m, k) for m in modes for k in ("throughput_rps", "users_per_s",
                                                          "p50_ms", "p99_ms")},
        f"{n}_over_w1_ratios": workers_ratios,
        f"{n}_over_w1_median": float(np.median(workers_ratios)),
        "batch_users_over_single_ratios": batch_ratios,
        "batch_users_over_single_median": float(np.median(batch_ratios)),
        f"{n}_batch_users_over_single_ratios": batch_ratios_n,
        f"{n}_batch_users_over_single_median": float(np.median(batch_ratios_n)),
        "rss_mb": {m: rows[m][-1]["rss_mb"] for m in modes},
    }
    summary["goals"] = {
        f"{n}_at_least_1.5x_w1": summary[f"{n}_over_w1_median"] >= 1.5,
        f"{n}_p99_under_25ms": summary[f"{n}_p99_ms"] < 25.0,
        "batch_users_at_least_5x_w1": summary["batch_users_over_single_median"] >= 5.0,
        f"batch_users_at_least_5x_{n}": summary[f"{n}_batch_users_over_single_median"] >= 5.0,
    }
    print()
    print(f"{'':22s}" + "".join(f"{m:>12s}" for m in modes))
    for key, label in (("throughput_rps", "requests/s"), ("users_per_s", "users/s"),
                       ("p50_ms", "p50 (ms)"), ("p99_ms", "p99 (ms)")):
        print(f"{label:22s}" + "".join(f"{summary[f'{m}_{key}']:12.2f}" for m in modes))
    print(f"{n} / w1 throughput (median of per-repeat ratios): "
          f"{summary[f'{n}_over_w1_median']:.3f}")
    print(f"batched / single users/s (median of per-repeat ratios): w1 "
          f"{summary['batch_users_over_single_median']:.3f}, {n} "
          f"{summary[f'{n}_batch_users_over_single_median']:.3f}")
    print("goals:", json.dumps(summary["goals"]))
    record = {"command": "python bench/workers_bench.py " + " ".join(argv or sys.argv[1:]),
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
              "settings": vars(args), "summary": summary, "runs": rows,
              "when": time.strftime("%Y-%m-%d %H:%M")}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
