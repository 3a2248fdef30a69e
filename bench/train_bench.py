"""Training throughput of relu, smelu, smelu with a linear learning-rate decay and the 4-model
ReLU ensemble, side by side in one run.

    python bench/train_bench.py [--repeats 3] [--synth-rows 1000000] [--max-rows 250000]
                                [--config configs/smelu.toml] [--out FILE]

Datasets: MovieLens 100K (the config's train split) and a synthetic set of ``--synth-rows``
rows (10^4 users, 10^5 items; generated into bench/out once). For each repeat the variants
run in turn (relu, smelu, smelu+decay, relu-ensemble:4), so machine noise hits them alike.
Every model trains with the trainer's own optimizer (``make_optimizer``). A measurement
trains a freshly built, already traced model (a warm-up fit of a few batches first) on one
epoch of the seeded shuffle, capped at ``--max-rows`` rows, with the same code path and op
determinism as ``steadyrank train``. The ensemble trains its 4 members one after another,
so its examples/s is rows / (time of all 4). Figures are medians over repeats; the ratios
compare medians from this run. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

from steadyrank.model import config as cfg  # noqa: E402
from steadyrank.model.data import synth  # noqa: E402
from steadyrank.model.data.splits import Prepared, prepare_data  # noqa: E402
from steadyrank.model.network.ranking import RankingModel  # noqa: E402
from steadyrank.model.training.averaging import make_optimizer  # noqa: E402
from steadyrank.model.training.inputs import TrainInput, make_input  # noqa: E402
from steadyrank.model.training.trainer import member_seeds  # noqa: E402

WARMUP_BATCHES = 4  # traced before the timed epoch

# name -> (activation, members, train.lr_decay)
VARIANTS = {"relu": ("relu", 1, "none"), "smelu": ("smelu", 1, "none"),
            "smelu+decay": ("smelu", 1, "linear"), "relu-ensemble:4": ("relu", 4, "none")}


def _order(data: TrainInput, rows: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).permutation(data.rows)[:rows]


def _model(config: cfg.Config, data: TrainInput, seed: int, steps: int) -> RankingModel:
    keras.utils.set_random_seed(seed)
    model = RankingModel(config.model, data.prepared.schema, data.prepared.stats)
    # The schedule spans the warm-up batches below and the timed epoch's ``steps``.
    model.compile(optimizer=make_optimizer(config.train.learning_rate,
                                           total_steps=steps + WARMUP_BATCHES,
                                           decay=cfg.parse_decay(config.train.lr_decay)))
    model.fit(data.batches(_order(data, WARMUP_BATCHES * config.train.batch_size, seed)),
              epochs=1, verbose=0)  # trace
    return model


def measure(config: cfg.Config, data: TrainInput, members: int, max_rows: int) -> float:
    """Examples per second of one capped epoch over ``members`` freshly built models."""
    rows = min(data.rows, max_rows)
    steps = -(-rows // config.train.batch_size)
    models = [_model(config, data, s, steps) for s in member_seeds(1, members)]
    started = time.perf_counter()
    for i, model in enumerate(models):
        model.fit(data.batches(_order(data, rows, i + 1)), epochs=1, verbose=0)
    return rows / (time.perf_counter() - started)


def bench_dataset(name: str, base: cfg.Config, prepared: Prepared, repeats: int,
                  max_rows: int) -> dict:
    """Median examples/s per variant over interleaved repeats."""
    samples: dict[str, list[float]] = {v: [] for v in VARIANTS}
    data = make_input(prepared, base.train.batch_size, "full", log=lambda _: None)
    for r in range(repeats):
        for variant, (activation, members, decay) in VARIANTS.items():
            config = replace(base, model=replace(base.model, activation=activation),
                             train=replace(base.train, lr_decay=decay))
            samples[variant].append(measure(config, data, members, max_rows))
            print(f"  {name} repeat {r + 1}/{repeats} {variant}: "
                  f"{samples[variant][-1]:,.0f} ex/s", file=sys.stderr, flush=True)
    medians = {v: statistics.median(s) for v, s in samples.items()}
    return {"rows": min(data.rows, max_rows), "train_rows": data.rows,
            "examples_per_second": medians, "samples": samples,
            "smelu_vs_relu": medians["smelu"] / medians["relu"],
            "decay_vs_smelu": medians["smelu+decay"] / medians["smelu"],
            "ensemble_vs_relu": medians["relu-ensemble:4"] / medians["relu"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/smelu.toml")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--synth-rows", type=int, default=1_000_000)
    parser.add_argument("--max-rows", type=int, default=250_000,
                        help="rows timed per measurement (default 250000)")
    parser.add_argument("--out", default="bench/out/train_bench.json")
    args = parser.parse_args(argv)
    tf.config.experimental.enable_op_determinism()
    base = cfg.load(args.config)
    results = {}
    print("MovieLens 100K ...", file=sys.stderr)
    results["movielens-100k"] = bench_dataset("movielens-100k", base, prepare_data(base),
                                              args.repeats, args.max_rows)
    folder = Path("bench/out") / f"synth-{args.synth_rows}"
    if not (folder / "manifest.json").exists():
        synth.generate(synth.SynthSpec(users=10_000, items=100_000, rows=args.synth_rows,
                                       seed=0), folder, force=True)
    synth_config = replace(base, data=replace(base.data, dataset="synthetic",
                                              data_dir=str(folder)))
    print(f"synthetic {args.synth_rows:,} rows ...", file=sys.stderr)
    results["synthetic"] = bench_dataset(
        "synthetic", synth_config, prepare_data(synth_config), args.repeats, args.max_rows)
    print(f"\n{'dataset':<16}{'rows timed':>12}" + "".join(f"{v:>18}" for v in VARIANTS)
          + f"{'smelu/relu':>12}{'decay/smelu':>13}{'ens4/relu':>11}")
    for name, r in results.items():
        print(f"{name:<16}{r['rows']:>12,}"
              + "".join(f"{r['examples_per_second'][v]:>14,.0f} ex/s" for v in VARIANTS)
              + f"{r['smelu_vs_relu']:>12.3f}{r['decay_vs_smelu']:>13.3f}"
              f"{r['ensemble_vs_relu']:>11.3f}")
    payload = {"command": "python bench/train_bench.py " + " ".join(argv or sys.argv[1:]),
               "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                           "tensorflow": tf.__version__,
                           "gpus": [tf.config.experimental.get_device_details(g).get(
                               "device_name", g.name)
                               for g in tf.config.list_physical_devices("GPU")]},
               "config": base.to_dict(), "repeats": args.repeats, "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(payload, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
