"""Training throughput of the Criteo-shaped study's models: ReLU against the shipped recipe,
side by side in one run.

    python bench/criteo_train_bench.py [--rows 1000000] [--repeats 3] [--out FILE]
                                       [--base configs/criteo-relu-2.toml]
                                       [--recipe configs/criteo-steady.toml]

Data: ``steadyrank data synth --schema criteo`` Parquet (the streaming benchmark's draw of
``--rows`` rows in bench/out, generated once). Models: ``--base`` (the study's ReLU: round
2's ``relu``; round 1's base was configs/criteo-study.toml) and ``--recipe`` (the named
recipe on the same schema), each trained as ``steadyrank train`` does (one time-ordered
streamed pass with the config's shuffle window, its batch size, its techniques: weight
averaging, co-distillation and the rest are in the time), on the rows before the time
split. For each repeat the two run in turn, so machine noise hits both alike; examples/s is
the trainer's own (the pass's rows over its fit time; the statistics pass is shared and not
in it). Medians over repeats, the recipe/ReLU ratio of the medians, and the median of the
per-repeat ratios. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from stream_bench import dataset  # noqa: E402  (the streaming benchmark's draw)

from steadyrank.model import config as cfg  # noqa: E402
from steadyrank.model.data.splits import prepare_data  # noqa: E402
from steadyrank.model.training.trainer import train  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def _shown(path: str) -> str:
    """``path`` relative to the repository when it lies inside it (as a command names it)."""
    resolved = Path(path).resolve()
    return str(resolved.relative_to(REPO)) if resolved.is_relative_to(REPO) else path


def main() -> int:
    """Runs the benchmark; prints a table and writes JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--base", default=str(REPO / "configs" / "criteo-relu-2.toml"))
    parser.add_argument("--recipe", default=str(REPO / "configs" / "criteo-steady.toml"))
    parser.add_argument("--out", default=str(REPO / "bench" / "results"
                                             / "criteo_train_bench.json"))
    args = parser.parse_args()
    if args.repeats < 1 or args.rows < 1000:
        parser.error("--repeats must be >= 1 and --rows >= 1000")
    folder, _ = dataset(args.rows)
    data = [f"data.train=[\"{folder}/*.parquet\"]"]
    configs = {"relu": cfg.load(args.base, data), "recipe": cfg.load(args.recipe, data)}
    prepared = prepare_data(configs["relu"])
    runs: dict[str, list[float]] = {name: [] for name in configs}
    seconds: dict[str, list[float]] = {name: [] for name in configs}
    for repeat in range(args.repeats):
        for name, config in configs.items():
            started = time.perf_counter()
            result = train(config, 1, replace(prepared, config=config), log=lambda _: None)
            runs[name].append(result.examples_per_second)
            seconds[name].append(time.perf_counter() - started)
            print(f"repeat {repeat + 1}/{args.repeats} {name}: "
                  f"{result.examples_per_second:,.0f} ex/s "
                  f"({seconds[name][-1]:.0f} s with build and warm-up)", flush=True)
    medians = {name: statistics.median(v) for name, v in runs.items()}
    ratio = medians["recipe"] / medians["relu"]
    paired = [r / b for r, b in zip(runs["recipe"], runs["relu"], strict=True)]
    print(f"\n{'model':10s} {'examples/s (median)':>20s} {'per repeat':>30s}")
    for name, values in runs.items():
        print(f"{name:10s} {medians[name]:20,.0f} "
              f"{', '.join(f'{v:,.0f}' for v in values):>30s}")
    print(f"recipe / relu examples/s: {ratio:.2f}x of the medians (training cost "
          f"{1 / ratio:.2f}x); per repeat {', '.join(f'{r:.2f}' for r in paired)}, median "
          f"{statistics.median(paired):.2f}x")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "command": "python bench/criteo_train_bench.py "
                   f"--rows {args.rows} --repeats {args.repeats} --base {_shown(args.base)} "
                   f"--recipe {_shown(args.recipe)} --out {_shown(args.out)}",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "rows": args.rows, "train_rows": prepared.train.rows,
        "configs": {name: c.to_dict() for name, c in configs.items()},
        "examples_per_second": runs, "seconds_with_build": seconds,
        "medians": medians, "recipe_over_relu": ratio, "recipe_over_relu_per_repeat": paired,
        "recipe_over_relu_per_repeat_median": statistics.median(paired)}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
