"""The ``steadyrank`` command: one entry point, a subcommand per job."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from steadyrank.cli import deploy, environment, exits, quiet, serving

Handler = Callable[[argparse.Namespace], int]


def _import_build_module():
    """steadyrank.ops.build (importing it loads nothing)."""
    from steadyrank.ops import build

    return build


def _ops_build(args: argparse.Namespace) -> int:
    return _import_build_module().main(args.build_args)


def _ops_info(args: argparse.Namespace) -> int:
    build = _import_build_module()

    info = build.read_info()
    if info is None:
        print(f"no op library in {build.lib_dir()}; run 'steadyrank ops build'",
              file=sys.stderr)
        return 1
    print(json.dumps({"path": str(build.lib_dir() / build.LIB_NAME), **asdict(info)},
                     indent=2))
    return 0


def _data_fetch(args: argparse.Namespace) -> int:
    from steadyrank.model.data import presets

    fetchable = [name for name, p in presets.REGISTRY.items() if p.fetch is not None]
    if args.dataset not in fetchable:
        raise ValueError(f"unknown dataset {args.dataset!r}; known: {', '.join(fetchable)}")
    fetch = presets.get(args.dataset).fetch
    assert fetch is not None
    print(fetch(args.data_dir, source=args.source, force=args.force))
    return 0


def _data_synth(args: argparse.Namespace) -> int:
    if args.schema == "criteo":
        from steadyrank.model.data import criteo_synth

        spec = criteo_synth.CriteoSpec(
            rows=args.rows, seed=args.seed, shard_rows=args.shard_rows,
            format=args.format or "parquet", zipf_exponent=args.zipf,
            click_rate=args.click_rate if args.click_rate is not None else 0.25)
        if args.start_shard is None and not args.every and not args.shards:
            print(criteo_synth.generate(spec, args.out, force=args.force))
            return 0
        if args.force:
            raise ValueError("--force replaces a whole folder; a stream (--start-shard, "
                             "--shards, --every) appends to one")
        criteo_synth.stream(spec, args.out, start=args.start_shard, count=args.shards or 0,
                            every=args.every)
        print(args.out)
        return 0
    if args.start_shard is not None or args.every or args.shards:
        raise ValueError("--start-shard, --shards and --every apply to --schema criteo")
    from steadyrank.model.data import synth

    if args.format:
        raise ValueError("--format applies to --schema criteo (the MovieLens-shaped data is "
                         "written as .npz shards)")
    spec = synth.SynthSpec(users=args.users, items=args.items, rows=args.rows, seed=args.seed,
                           shard_rows=args.shard_rows, zipf_exponent=args.zipf,
                           planted=args.planted, task=args.task,
                           click_rate=args.click_rate if args.click_rate is not None else 0.1)
    print(synth.generate(spec, args.out, force=args.force))
    return 0


def _data_schema(args: argparse.Namespace) -> int:
    from steadyrank.model.data import draft

    if args.rows < 1:
        raise ValueError(f"--rows must be >= 1, got {args.rows}")
    print(draft.draft(args.path, args.rows, args.delimiter), end="")
    return 0


def _train(args: argparse.Namespace) -> int:
    from steadyrank.model.config import load
    from steadyrank.model.training.workflow import train_and_export

    overrides = list(args.overrides)
    if args.strategy:
        overrides.append(f"train.strategy={args.strategy}")
    config = load(args.config, overrides)
    path = train_and_export(config, args.seed, args.export_dir, args.checkpoint_dir,
                            keep_checkpoints=args.keep_checkpoints, version=args.version,
                            order_seed=args.order_seed)
    if args.portable_dir:
        from steadyrank.model.artifact.portable import make_portable

        print(f"portable copy: {make_portable(path, args.portable_dir)}", file=sys.stderr)
    print(path)
    return 0


def _portable(args: argparse.Namespace) -> int:
    from steadyrank.model.artifact.portable import make_portable

    print(make_portable(args.export, args.out))
    return 0


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model (or ensemble) and export a new version")
    p.add_argument("--config", required=True, help="experiment config (TOML), e.g. "
                   "configs/smelu.toml")
    p.add_argument("--seed", type=int, default=1,
                   help="init seed, and row-order seed unless --order-seed (default 1)")
    p.add_argument("--order-seed", type=int, default=None,
                   help="row-order seed (default: --seed)")
    p.add_argument("--export-dir", required=True,
                   help="model base folder; the export lands in EXPORT_DIR/VERSION/")
    p.add_argument("--version", type=int, default=None,
                   help="version number (default: the next free one)")
    p.add_argument("--checkpoint-dir", default=None,
                   help="epoch checkpoints, for resuming a killed run (default: "
                   "checkpoints/NAME-seed-SEED)")
    p.add_argument("--keep-checkpoints", action="store_true",
                   help="keep the checkpoints after a successful export")
    p.add_argument("--strategy", default=None,
                   choices=["default", "parameter-server", "mirrored"],
                   help="distribution strategy (default: the config's train.strategy); "
                   "parameter-server and mirrored read the cluster from TF_CONFIG")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="SECTION.KEY=VALUE",
                   help="override a config value, e.g. --set train.epochs=3 (repeatable)")
    p.add_argument("--portable-dir", default=None, metavar="BASE",
                   help="also write the export's portable copy (SmeLU in TensorFlow's own "
                   "ops, loadable by stock TF Serving) as BASE/VERSION/")
    p.set_defaults(handler=_train)
    p = sub.add_parser("portable", help="write an export's portable copy: the same model, "
                       "signatures and manifest with SmeLU and g-SmeLU in TensorFlow's own "
                       "ops, as a TF Serving model base path BASE/VERSION/")
    p.add_argument("export", metavar="EXPORT", help="a version folder (or a model base "
                   "folder: its latest version)")
    p.add_argument("--out", required=True, metavar="BASE",
                   help="the model base path to write VERSION/ into")
    p.set_defaults(handler=_portable)


def _cluster(args: argparse.Namespace) -> int:
    from steadyrank.model.training import local_cluster as cluster

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    return cluster.run(args.ps, args.workers, command, args.strategy,
                       Path(args.log_dir) if args.log_dir else None)


def _cluster_node(args: argparse.Namespace) -> int:
    from steadyrank.model.training.distributed import serve_node

    serve_node()
    return 0


def _add_cluster(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cluster", help="run a steadyrank command as the chief of a local "
                       "TensorFlow cluster (parameter servers and workers on loopback)")
    p.add_argument("--ps", type=int, default=2, help="parameter servers (default 2)")
    p.add_argument("--workers", type=int, default=2, help="workers (default 2)")
    p.add_argument("--strategy", default="parameter-server",
                   choices=["parameter-server", "mirrored"],
                   help="strategy set for train/compare/trainer (default parameter-server)")
    p.add_argument("--log-dir", default=None, help="folder for the nodes' logs")
    p.add_argument("command", nargs=argparse.REMAINDER,
                   help="-- then the steadyrank command, e.g. -- train --config ...")
    p.set_defaults(handler=_cluster)
    p = sub.add_parser("cluster-node", help="run this process as the TF_CONFIG task (a "
                       "parameter server or worker) until stopped")
    p.set_defaults(handler=_cluster_node)


def _compare(args: argparse.Namespace) -> int:
    import shlex

    from steadyrank.model.config import load
    from steadyrank.model.evaluation import compare, pairs, report

    command = "steadyrank " + shlex.join(args.argv)
    variants = compare.parse_variants(args.variants)
    vary = pairs.parse_vary(args.vary)
    if args.winner and args.winner not in {v.name for v in variants}:
        raise ValueError(f"--winner {args.winner!r} is not one of the variants")
    config = load(args.config, args.overrides)
    notes = Path(args.notes).read_text() if args.notes else ""
    work = Path(args.work_dir) if args.work_dir else Path("runs") / Path(args.out).name
    result = compare.run(config, variants, args.pairs, work, users=args.users,
                         validation=args.validation, vary=vary, first_pair=args.first_pair,
                         records=args.records)
    print(report.write(result, args.out, command, notes, winner=args.winner))
    return 0


def _explain_pd(args: argparse.Namespace) -> int:
    from steadyrank.core.fileio import atomic_write_json
    from steadyrank.model.artifact.reader import load
    from steadyrank.model.config import load as load_config
    from steadyrank.model.data.batches import concat
    from steadyrank.model.data.splits import prepare_data
    from steadyrank.model.evaluation.breakdown import explain, format_breakdown

    if args.rows < 1:
        raise ValueError(f"--rows must be >= 1, got {args.rows}")
    a, b = load(args.export_a), load(args.export_b)
    prepared = prepare_data(load_config(args.config, args.overrides),
                            validation=args.validation)
    parts, n = [], 0
    for rows in prepared.eval_batches():
        parts.append(rows.take(slice(0, args.rows - n)))
        n += len(parts[-1])
        if n >= args.rows:
            break
    result = explain(a, b, concat(parts).inputs)
    result.update({"a": str(a.path), "b": str(b.path), "config": args.config})
    print(format_breakdown(result))
    if args.out:
        atomic_write_json(Path(args.out), result)
        print(f"wrote {args.out}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from steadyrank.model.evaluation import report

    notes = Path(args.notes).read_text() if args.notes else None
    for folder in args.folders:
        print(report.rerender(folder, winner=args.winner, notes=notes))
        if args.curve:
            from steadyrank.model.evaluation import curve

            print(curve.write(folder))
        if args.pick_winner:
            from steadyrank.model.evaluation import tuning

            print(tuning.write(folder))
        if args.replicates:
            from steadyrank.model.evaluation import replication

            print(replication.write(folder, args.replicates))
    return 0


def _add_compare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="train replica pairs per variant and report PD, top-k "
                       "swap rate, accuracy and cost")
    p.add_argument("--config", required=True, help="base config (TOML)")
    p.add_argument("--variants", required=True,
                   help="comma-separated: relu, smelu:BETA, gsmelu:BETA, gelu, swish, softplus, "
                   "relu-ensemble:K, ...; '+TECHNIQUE[:VALUE]' turns techniques on, e.g. "
                   "smelu:2+ema:0.999+codistill:0.5+mincount:5+l2:1e-4+init:0.01+window:1000")
    p.add_argument("--vary", default="all",
                   help="what replicas differ by, comma-separated, one table each: all (init "
                   "and order), init, order, async (parameter servers; in a cluster)")
    p.add_argument("--winner", default=None,
                   help="the single-model variant the goals are judged for (chosen on the "
                   "validation split); default: the lowest-PD accurate single model")
    p.add_argument("--pairs", type=int, default=3, help="replica pairs per variant (default 3)")
    p.add_argument("--first-pair", type=int, default=0,
                   help="index of the first pair (default 0); pair p's replicas take seeds "
                   "2p+1 and 2p+2, so a final eval run can use seeds no earlier run used")
    p.add_argument("--out", required=True, help="report folder (report.md, report.json, png)")
    p.add_argument("--work-dir", default=None,
                   help="where replica exports are cached (default runs/<out name>)")
    p.add_argument("--records", default=None,
                   help="where each finished pair's numbers are kept (default: the work dir); "
                   "a pair whose record matches is not trained or measured again, so a study "
                   "whose records are committed resumes on another machine")
    p.add_argument("--users", type=int, default=943,
                   help="users whose full-catalog rankings are compared (default 943)")
    p.add_argument("--validation", action="store_true",
                   help="measure on a validation split carved from train (for tuning)")
    p.add_argument("--notes", default=None, help="markdown file appended to report.md")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="SECTION.KEY=VALUE", help="override a base config value")
    p.set_defaults(handler=_compare)

    p = sub.add_parser("explain-pd", help="where two replicas disagree: PD by the rarest "
                       "value's training count, by score decile, and by part of the model "
                       "(tables or network), on the eval rows")
    p.add_argument("export_a", metavar="EXPORT_A", help="replica A (a version folder or a "
                   "model base folder: its latest version)")
    p.add_argument("export_b", metavar="EXPORT_B", help="replica B")
    p.add_argument("--config", required=True, help="the config the replicas trained with "
                   "(its data's eval split is what they are compared on)")
    p.add_argument("--rows", type=int, default=1_000_000,
                   help="at most this many eval rows (default 1,000,000)")
    p.add_argument("--validation", action="store_true",
                   help="compare on the validation split carved from train (as compare's "
                   "--validation)")
    p.add_argument("--out", default=None, help="also write the breakdown as JSON here")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="SECTION.KEY=VALUE", help="override a config value")
    p.set_defaults(handler=_explain_pd)

    p = sub.add_parser("report", help="render comparison reports again from their "
                       "report.json, with 95%% bootstrap intervals (no retraining)")
    p.add_argument("folders", nargs="+", metavar="FOLDER", help="report folders")
    p.add_argument("--winner", default=None,
                   help="judge the goals for this single-model variant (one named after "
                   "the run by a tuning rule); default: the report's own")
    p.add_argument("--notes", default=None,
                   help="markdown file to append as the report's notes (default: its own)")
    p.add_argument("--curve", action="store_true",
                   help="also draw SmeLU's trade-off curve (relative PD and log loss "
                   "against beta, from the relu and smelu:BETA[+nonorm] variants) and name "
                   "the chosen beta: curve.md, curve.png, curve.json")
    p.add_argument("--pick-winner", action="store_true",
                   help="also name the winner of a tuning comparison by the study rule "
                   "(lowest relative PD under --vary all among single models within 0.0003 "
                   "loss of relu's and 2.5x its training time; fallbacks in winner.md): "
                   "winner.md, winner.json")
    p.add_argument("--replicates", default=None, metavar="JUDGMENT_FOLDER",
                   help="also check that this replication (the judgment's winner and relu on "
                   "a fresh draw) replicates the judgment in JUDGMENT_FOLDER: its relative-PD "
                   "ratio under --vary all inside the judgment's interval; replication.md, "
                   "replication.json")
    p.set_defaults(handler=_report)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="steadyrank",
        description="Reproducible recommender training and serving.")
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's own log lines too (or STEADYRANK_LOG=debug)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ops = sub.add_parser("ops", help="the SmeLU op library").add_subparsers(
        dest="ops_command", required=True, metavar="OPS_COMMAND")
    # Options (--cuda, --no-cuda, --force, --help) belong to steadyrank.ops.build's parser.
    p = ops.add_parser("build", help="compile the op library", add_help=False)
    p.set_defaults(handler=_ops_build, passthrough=True)
    ops.add_parser("info", help="show what the built library was built for").set_defaults(
        handler=_ops_info)

    data = sub.add_parser("data", help="datasets").add_subparsers(
        dest="data_command", required=True, metavar="DATA_COMMAND")
    p = data.add_parser("fetch", help="fetch, verify and cache a dataset")
    p.add_argument("dataset", help="movielens-100k")
    p.add_argument("--data-dir", default="data", help="cache root (default: data)")
    p.add_argument("--from", dest="source", default=None, metavar="PATH",
                   help="GroupLens ml-100k.zip or folder with u.data, u.user, u.item")
    p.add_argument("--force", action="store_true", help="refetch even if cached")
    p.set_defaults(handler=_data_fetch)
    p = data.add_parser("synth", help="generate synthetic interactions (Zipf popularity, "
                        "side features, planted model) as sharded files")
    p.add_argument("--users", type=int, default=10_000, help="number of users (default 10000)")
    p.add_argument("--items", type=int, default=100_000, help="number of items (default 1e5)")
    p.add_argument("--rows", type=int, default=1_000_000, help="interactions (default 1e6)")
    p.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    p.add_argument("--shard-rows", type=int, default=1_000_000,
                   help="rows per shard file (default 1e6)")
    p.add_argument("--zipf", type=float, default=1.1,
                   help="Zipf exponent of item popularity (default 1.1)")
    p.add_argument("--planted", default="bilinear", choices=["bilinear", "mlp"],
                   help="the ground-truth model: bilinear, or a random deep network (mlp)")
    p.add_argument("--task", default="rating", choices=["rating", "click"],
                   help="ratings 1..5, or clicks 0/1 (train with model.task=binary, "
                   "binary_threshold=1)")
    p.add_argument("--click-rate", type=float, default=None,
                   help="share of clicks (default 0.1 for --task click, 0.25 for --schema "
                   "criteo)")
    p.add_argument("--schema", default="movielens", choices=["movielens", "criteo"],
                   help="movielens: MovieLens-shaped interactions (users, items, side "
                   "features) as .npz shards; criteo: 13 heavy-tailed counts and 26 Zipf "
                   "categorical ids with a planted click model and drift, as Parquet or "
                   "Criteo TSV (default movielens)")
    p.add_argument("--format", default=None, choices=["parquet", "criteo"],
                   help="with --schema criteo: parquet shards (with a ts column) or Criteo "
                   "TSV (default parquet)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--force", action="store_true", help="replace an existing folder")
    p.add_argument("--start-shard", type=int, default=None, metavar="N",
                   help="with --schema criteo: append shards to --out from shard N on, each "
                   "continuing the last (the bytes the whole run writes for them; default "
                   "with --shards or --every: the one after those already there)")
    p.add_argument("--shards", type=int, default=None, metavar="N",
                   help="with --schema criteo: append N shards (default: to the stream's end)")
    p.add_argument("--every", type=float, default=0.0, metavar="SECONDS",
                   help="with --schema criteo: wait SECONDS between shards (a live stream "
                   "for `trainer --follow`)")
    p.set_defaults(handler=_data_synth)
    p = data.add_parser("schema", help="print a first draft of a schema ([data], [label], "
                        "[[features]]) from a sample of a file's rows")
    p.add_argument("path", metavar="FILE_OR_GLOB", help="Parquet, CSV or Criteo TSV file(s)")
    p.add_argument("--rows", type=int, default=100_000,
                   help="rows to read at most (default 100000)")
    p.add_argument("--delimiter", default=",", help="CSV delimiter (default ,)")
    p.set_defaults(handler=_data_schema)
    _add_train(sub)
    _add_compare(sub)
    _add_cluster(sub)
    serving.add_parsers(sub)
    deploy.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``steadyrank`` command."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    environment.prepare(verbose=args.verbose)
    if argv is None:  # the real command, not a call from tests: filter native chatter
        quiet.install(os.environ)
    if getattr(args, "passthrough", False):
        args.build_args = extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.argv = list(sys.argv[1:] if argv is None else argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except exits.EXPECTED as err:
        return exits.report(err)


if __name__ == "__main__":
    sys.exit(main())
