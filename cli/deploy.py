"""The deployment subcommands: ``trainer``, ``traffic``, ``health`` and ``up``."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from steadyrank.cli.arguments import add_pacing, non_negative, positive
from steadyrank.core.log import sayer
from steadyrank.service.settings import DEFAULT_METRICS_PORT, DEFAULT_PORT, DEFAULT_SERVER


def _trainer(args: argparse.Namespace) -> int:
    from steadyrank.model.config import load
    from steadyrank.model.publishing import replicas

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    log = sayer("trainer")
    config = load(args.config, args.overrides)
    gate = replicas.Gate(args.max_churn_swap, args.max_churn_pd)
    name = args.name or config.model_name(args.config)
    if args.follow or config.data.follow:
        from steadyrank.model.publishing import continuous

        rounds = continuous.follow(config, args.models, name, args.users, log=log,
                                   should_stop=stop.wait, poll_seconds=args.poll_seconds,
                                   vary=args.vary, gate=gate, max_rounds=args.max_rounds)
        held = sum(not r.published for r in rounds)
        log(f"done: {len(rounds)} round(s)" + (f", {held} held back by the churn gate"
                                                if held else ""))
        return 0
    rounds = replicas.run(config, args.models, name, args.retrain_interval,
                          args.keep, args.users, log=log, should_stop=stop.wait,
                          vary=args.vary, warm_start=args.warm_start, gate=gate,
                          warm_epochs=args.warm_start_epochs,
                          warm_lr_scale=args.warm_start_lr_scale)
    held = sum(not r.published for r in rounds)
    log(f"done: {len(rounds)} round(s), latest version {rounds[-1].version}"
        + (f", {held} held back by the churn gate" if held else ""))
    return 0


def model_name_of(config_path: str | None) -> str:
    """The model a config trains and serves (``ml`` without a config)."""
    from steadyrank.model.config import DEFAULT_MODEL_NAME, load

    return load(config_path).model_name(config_path) if config_path else DEFAULT_MODEL_NAME


def _traffic(args: argparse.Namespace) -> int:
    from steadyrank.service.client import traffic

    if args.rate == 0:  # switched off (TRAFFIC_RATE=0): stay up quietly until stopped
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        sayer("traffic")("rate 0: sending nothing")
        stop.wait()
        return 0
    model = args.model or model_name_of(args.config)
    try:
        stats = traffic.run(args.server, model, args.rate, args.duration,
                            args.candidates, args.predict_share, args.timeout,
                            args.ready_timeout, args.report_every, args.seed,
                            log=sayer("traffic"))
    except KeyboardInterrupt:
        return 0
    sayer("traffic")(f"done: {stats.line()}")
    return 0


def _health(args: argparse.Namespace) -> int:
    from steadyrank.service.client.probe import health

    problem = health(args.server, args.model, args.timeout)
    if problem:
        print(f"unhealthy: {args.server}: {problem}", file=sys.stderr)
        return 1
    print(f"{args.server}: SERVING" + (f", model {args.model!r} available" if args.model
                                       else ""))
    return 0


def _up(args: argparse.Namespace) -> int:
    from steadyrank.cli import stack

    config = args.config or (stack.STREAM_CONFIG if args.stream else stack.DEFAULT_CONFIG)
    return stack.up(stack.StackConfig(
        config=Path(config), work=Path(args.work), port=args.port,
        metrics_port=args.metrics_port, prometheus_port=args.prometheus_port,
        traffic_rate=args.traffic_rate, retrain_interval=args.retrain_interval,
        overrides=args.overrides, stream=args.stream, stream_every=args.stream_every))


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Adds ``trainer``, ``traffic``, ``health`` and ``up``."""
    p = sub.add_parser("trainer", help="train replicas NAME and NAME-b, measure their offline "
                       "PD, publish both as a new version; optionally retrain on a schedule")
    p.add_argument("--config", default="configs/smelu.toml",
                   help="experiment config (default configs/smelu.toml)")
    p.add_argument("--models", default="models", help="model base path (default models)")
    p.add_argument("--name", default=None, help="model name (default: the config's "
                   "[serving] name, else its file's stem; B is NAME-b)")
    p.add_argument("--retrain-interval", type=float, default=0.0,
                   help="seconds between retrains; 0 (default): train once and exit")
    p.add_argument("--follow", action="store_true",
                   help="train continuously: a round, warm-started, on each set of new "
                   "files the config's data.train globs name (also [data] follow = true)")
    p.add_argument("--poll-seconds", type=positive(float), default=30.0,
                   help="with --follow: how often to look for new files (default 30)")
    p.add_argument("--max-rounds", type=int, default=0,
                   help="with --follow: stop after this many rounds (default 0: never)")
    p.add_argument("--keep", type=positive(int), default=3,
                   help="versions of each replica to keep (default 3)")
    p.add_argument("--users", type=positive(int), default=100,
                   help="users whose full-catalog rankings give the offline swap rate "
                   "(default 100)")
    p.add_argument("--vary", default="all", choices=["all", "init", "order"],
                   help="what replica B differs from A by: init and order seeds (all, "
                   "default), the init seed, or the row order")
    p.add_argument("--warm-start", action="store_true",
                   help="start each retrain from the serving version's weights")
    p.add_argument("--warm-start-epochs", type=positive(int), default=1,
                   help="epochs a warm-started retrain trains (default 1)")
    p.add_argument("--warm-start-lr-scale", type=float, default=0.1,
                   help="learning rate of a warm-started retrain, times the config's "
                   "(default 0.1: a fresh Adam state would otherwise shake the weights)")
    p.add_argument("--max-churn-swap", type=_fraction, default=None, metavar="X",
                   help="publish a retrain only if its top-10 swap rate against the serving "
                   "version is <= X")
    p.add_argument("--max-churn-pd", type=non_negative, default=None, metavar="X",
                   help="publish a retrain only if its relative PD against the serving "
                   "version is <= X")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="SECTION.KEY=VALUE", help="override a config value")
    p.set_defaults(handler=_trainer)

    p = sub.add_parser("traffic", help="send a steady rate of Rank and Predict requests "
                       "(open loop) until stopped")
    p.add_argument("--server", default=DEFAULT_SERVER,
                   help=f"default {DEFAULT_SERVER}")
    p.add_argument("--model", default=None, help="model name (default: --config's, else ml)")
    p.add_argument("--config", default=None,
                   help="the trainer's config: the model is its [serving] name, else its "
                   "file's stem")
    add_pacing(p, "send nothing, stay up")
    p.add_argument("--candidates", type=int, default=100,
                   help="random catalog items per Rank request (default 100; 0: whole catalog)")
    p.add_argument("--predict-share", type=float, default=0.2,
                   help="share of requests sent as Predict (default 0.2)")
    p.add_argument("--timeout", type=positive(float), default=5.0, help="default 5 s")
    p.add_argument("--ready-timeout", type=positive(float), default=1800.0,
                   help="seconds to wait for the server and model (default 1800)")
    p.add_argument("--report-every", type=positive(float), default=30.0,
                   help="seconds between progress lines (default 30)")
    p.add_argument("--seed", type=int, default=0, help="default 0")
    p.set_defaults(handler=_traffic)

    p = sub.add_parser("health", help="exit 0 if the server is SERVING (and the model loaded)")
    p.add_argument("--server", default=DEFAULT_SERVER,
                   help=f"default {DEFAULT_SERVER}")
    p.add_argument("--model", default=None, help="also require this model to be AVAILABLE")
    p.add_argument("--timeout", type=positive(float), default=3.0, help="default 3 s")
    p.set_defaults(handler=_health)

    p = sub.add_parser("up", help="the whole stack as local processes: data, train A and B, "
                       "serve, traffic, and Prometheus if installed; Ctrl-C stops it")
    p.add_argument("--config", default=None, help="default configs/smelu.toml "
                   "(configs/stream.toml with --stream)")
    p.add_argument("--stream", action="store_true",
                   help="continuous training: a process appends a Criteo-shaped shard every "
                   "--stream-every seconds under WORK/data/stream and the trainer follows "
                   "them (a round per shard)")
    p.add_argument("--stream-every", type=float, default=120.0,
                   help="with --stream: seconds between shards (default 120)")
    p.add_argument("--work", default="run", help="folder for models, data and logs "
                   "(default run)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT,
                   help=f"gRPC port (default {DEFAULT_PORT})")
    p.add_argument("--metrics-port", type=int, default=DEFAULT_METRICS_PORT,
                   help=f"default {DEFAULT_METRICS_PORT}")
    p.add_argument("--prometheus-port", type=int, default=9090, help="default 9090")
    p.add_argument("--traffic-rate", type=float, default=5.0,
                   help="requests/s of the traffic generator (default 5; 0: none)")
    p.add_argument("--retrain-interval", type=float, default=0.0,
                   help="seconds between retrains (default 0: train once)")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="SECTION.KEY=VALUE", help="override a training config value")
    p.set_defaults(handler=_up)
