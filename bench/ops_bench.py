"""SmeLU and g-SmeLU op throughput against the alternatives, measured side by side in one run.

    python bench/ops_bench.py [--sizes 1e4,1e5,1e6,1e7,1e8] [--repeats 7] [--out FILE]

For each size (float32, all intra-op threads) it times forward and forward+backward of:
the custom op (eager and in tf.function), smelu_reference eager / tf.function /
jit_compile=True, tf.nn.relu, tf.nn.gelu, tf.nn.silu (each in tf.function), and a plain
memory copy of the same bytes (numpy into a preallocated array, and TensorFlow's
DeepCopy op; the faster of the two is the bandwidth ceiling). g-SmeLU runs on x viewed as
[n / 100, 100] with a learnable per-unit beta (a variable of 100 values, alpha tied to it),
as the op (tf.function) and as gsmelu_reference under tf.function and XLA; its fwd+bwd also
computes the beta gradient. It prints a table and writes JSON.

GB/s counts the bytes an ideal kernel moves: forward reads x and writes y (8 B/elem);
forward+backward also reads dy and x and writes dx (20 B/elem in all). Each figure is the
median over repeats; ratios compare medians taken in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import steadyrank.ops as sro  # noqa: E402

BYTES_PER_ELEM = {"fwd": 8, "fwd+bwd": 20}
UNITS = 100  # g-SmeLU's per-unit width in this benchmark


def _forward(act: Callable) -> Callable:
    return lambda x, dy: act(x)


def _forward_backward(act: Callable) -> Callable:
    def run(x, dy):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = act(x)
        # Variables the activation reads (g-SmeLU's beta) get their gradients too.
        return y, tape.gradient(y, [x, *tape.watched_variables()], output_gradients=dy)

    return run


def _gsmelu(fn: Callable, beta: tf.Variable) -> Callable:
    def act(x):
        y = fn(tf.reshape(x, [-1, UNITS]), beta, beta, 0.0, 1.0, 0.0)
        return tf.reshape(y, [-1])

    return act


def variants() -> dict[str, tuple[Callable, str]]:
    """name -> (activation, how it runs: eager | function | xla)."""
    beta = tf.Variable(tf.fill([UNITS], 1.0), name="beta")
    return {
        "gsmelu op, unit beta (tf.fn)": (_gsmelu(sro.gsmelu, beta), "function"),
        "gsmelu ref, unit beta (tf.fn)": (_gsmelu(sro.gsmelu_reference, beta), "function"),
        "gsmelu ref, unit beta (XLA)": (_gsmelu(sro.gsmelu_reference, beta), "xla"),
        "smelu op (eager)": (lambda x: sro.smelu(x, 1.0), "eager"),
        "smelu op (tf.function)": (lambda x: sro.smelu(x, 1.0), "function"),
        "reference (eager)": (lambda x: sro.smelu_reference(x, 1.0), "eager"),
        "reference (tf.function)": (lambda x: sro.smelu_reference(x, 1.0), "function"),
        "reference (XLA)": (lambda x: sro.smelu_reference(x, 1.0), "xla"),
        "relu (tf.function)": (tf.nn.relu, "function"),
        "gelu (tf.function)": (tf.nn.gelu, "function"),
        "silu (tf.function)": (tf.nn.silu, "function"),
    }


def _compile(fn: Callable, how: str) -> Callable:
    if how == "eager":
        return fn
    return tf.function(fn, jit_compile=(how == "xla"))


def time_interleaved(fns: dict[str, Callable], repeats: int,
                     min_seconds: float = 0.05) -> dict[str, float]:
    """Median seconds per call of each function, measured round-robin.

    Every repeat times one batch of each function in turn, so a burst of load on this
    shared machine hits all variants alike and the ratios stay side by side.
    """
    calls = {}
    for name, fn in fns.items():
        fn()  # warm up / trace
        start = time.perf_counter()
        fn()
        calls[name] = max(1, int(min_seconds / max(time.perf_counter() - start, 1e-7)))
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(calls[name]):
                fn()
            samples[name].append((time.perf_counter() - start) / calls[name])
    return {name: statistics.median(v) for name, v in samples.items()}


def bench_size(n: int, repeats: int) -> list[dict]:
    """All variants at one size; returns rows of {variant, mode, n, seconds, gbps}."""
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=n).astype(np.float32))
    dy = tf.constant(rng.normal(size=n).astype(np.float32))
    src = x.numpy()
    dst = np.empty_like(src)
    fns: dict[tuple[str, str], Callable] = {
        ("copy (numpy, 1 thread)", "copy"): lambda: np.copyto(dst, src),
        ("copy (tf DeepCopy)", "copy"): lambda: tf.raw_ops.DeepCopy(x=x),
    }
    for mode, wrap in (("fwd", _forward), ("fwd+bwd", _forward_backward)):
        for name, (act, how) in variants().items():
            fn = _compile(wrap(act), how)
            fns[(name, mode)] = lambda fn=fn: fn(x, dy)
    seconds = time_interleaved(fns, repeats)
    return [{"variant": name, "mode": mode, "n": n, "seconds": s,
             "gbps": {"copy": 8, **BYTES_PER_ELEM}[mode] * n / s / 1e9}
            for (name, mode), s in seconds.items()]


def summarize(rows: list[dict]) -> dict:
    """Goal ratios of issue 2, at each size."""
    out = {}
    for n in sorted({r["n"] for r in rows}):
        t = {(r["variant"], r["mode"]): r["seconds"] for r in rows if r["n"] == n}
        op_fb = t[("smelu op (tf.function)", "fwd+bwd")]
        copy = max((r for r in rows if r["n"] == n and r["mode"] == "copy"),
                   key=lambda r: r["gbps"])
        fwd_gbps = 8 * n / t[("smelu op (tf.function)", "fwd")] / 1e9
        out[str(n)] = {
            "speedup_vs_tf_function_composite": t[("reference (tf.function)", "fwd+bwd")] / op_fb,
            "speedup_vs_xla_composite": t[("reference (XLA)", "fwd+bwd")] / op_fb,
            "time_vs_relu": op_fb / t[("relu (tf.function)", "fwd+bwd")],
            "forward_fraction_of_copy_bandwidth": fwd_gbps / copy["gbps"],
        }
        g_fb = t[("gsmelu op, unit beta (tf.fn)", "fwd+bwd")]
        out[str(n)]["gsmelu"] = {
            "speedup_vs_tf_function_composite":
                t[("gsmelu ref, unit beta (tf.fn)", "fwd+bwd")] / g_fb,
            "speedup_vs_xla_composite": t[("gsmelu ref, unit beta (XLA)", "fwd+bwd")] / g_fb,
            "time_vs_relu": g_fb / t[("relu (tf.function)", "fwd+bwd")],
        }
    return out


def print_table(rows: list[dict], summary: dict) -> None:
    sizes = sorted({r["n"] for r in rows})
    header = f"{'variant':28s} {'mode':8s}" + "".join(f"{f'n={n:.0e}':>20s}" for n in sizes)
    print(header + "\n" + "-" * len(header))
    keys = []
    for r in rows:
        if (r["variant"], r["mode"]) not in keys:
            keys.append((r["variant"], r["mode"]))
    for variant, mode in keys:
        cells = []
        for n in sizes:
            r = next(r for r in rows if (r["variant"], r["mode"], r["n"]) == (variant, mode, n))
            cells.append(f"{r['gbps']:6.2f}GB/s {r['seconds'] * 1e3:8.3f}ms")
        print(f"{variant:28s} {mode:8s}" + "".join(f"{c:>20s}" for c in cells))
    print("\nGoals (fwd+bwd, custom op in tf.function):")
    for n, s in summary.items():
        print(f"  n={int(n):.0e}: {s['speedup_vs_tf_function_composite']:.2f}x tf.function "
              f"composite (goal >= 2), {s['speedup_vs_xla_composite']:.2f}x XLA composite "
              f"(goal >= 1), {s['time_vs_relu']:.2f}x ReLU's time (goal <= 1.3), forward at "
              f"{100 * s['forward_fraction_of_copy_bandwidth']:.0f}% of copy bandwidth "
              "(goal >= 60%)")
    print("\ng-SmeLU with a learnable per-unit beta (fwd+bwd incl. the beta gradient, op in "
          "tf.function):")
    for n, s in summary.items():
        g = s["gsmelu"]
        print(f"  n={int(n):.0e}: {g['speedup_vs_tf_function_composite']:.2f}x tf.function "
              f"composite, {g['speedup_vs_xla_composite']:.2f}x XLA composite (goal >= 1), "
              f"{g['time_vs_relu']:.2f}x ReLU's time (goal <= 1.5)")


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmark, prints the table, writes JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1e4,1e5,1e6,1e7,1e8")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", default="bench/out/ops_bench.json")
    args = parser.parse_args(argv)
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    rows = []
    for n in sizes:
        print(f"n={n:.0e} ...", file=sys.stderr, flush=True)
        rows.extend(bench_size(n, args.repeats))
    summary = summarize(rows)
    print_table(rows, summary)
    result = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "processor": platform.processor(),
                    "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads()},
        "tensorflow": tf.__version__, "repeats": args.repeats, "rows": rows,
        "summary": summary,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
