"""The serving subcommands: ``serve``, ``rank``, ``loadtest`` and ``monitor``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from steadyrank.cli import arguments
from steadyrank.service import settings


def _logging(level: str, worker: str | None = None) -> None:
    who = f"[worker {worker}] " if worker is not None else ""
    logging.basicConfig(level=level.upper(),
                        format=f"%(asctime)s %(levelname)s {who}%(name)s: %(message)s")


def _serve(args: argparse.Namespace) -> int:
    _logging(args.log_level)
    from steadyrank.service.serve import supervisor

    config = arguments.settings_from(args, settings.ServerConfig, settings.flag_fields())
    return supervisor.serve(config, args.log_level)


def _serve_worker(args: argparse.Namespace) -> int:
    from steadyrank.service.serve import supervisor
    from steadyrank.service.serve.server import serve

    config = supervisor.config_from_json(args.config_json)
    _logging(args.log_level, config.worker)
    return serve(config)


def _rpc_error(err: Exception, server: str) -> int:
    import grpc

    if isinstance(err, grpc.RpcError):
        print(f"error: {server}: {err.code().name}: {err.details()}", file=sys.stderr)
        return 1
    raise err


def _monitor(args: argparse.Namespace) -> int:
    from steadyrank.core.log import sayer
    from steadyrank.service.client.monitor import run_monitor

    if args.rate < 0 or args.duration < 0 or args.limit < 0:
        raise ValueError("--rate, --duration and --limit must be >= 0")
    if args.export and args.requests:
        raise ValueError("--export and --requests: give one (recorded requests need no "
                         "schema)")
    run_monitor(args.model, args.replicas, args.metrics_port, args.export, args.requests,
                args.rate, args.duration, args.limit, args.candidates, args.user_input,
                args.timeout, args.seed, args.metrics_host, log=sayer("monitor"))
    return 0


def _rank(args: argparse.Namespace) -> int:
    from steadyrank.service import client
    from steadyrank.service.client.model_inputs import ModelInputs

    try:
        with client.channel(args.server) as chan:
            inputs = ModelInputs.read(chan, args.model, timeout=args.timeout)
            user = inputs.parse_id(args.user, "user")
            candidates = ([inputs.parse_id(c.strip(), "item") for c in args.candidates.split(",")
                           if c.strip()] if args.candidates else None)
            context, features = inputs.parse_features(args.features)
            request = client.rank_request(args.model, user, args.k, candidates, features,
                                          args.version, context=context, inputs=inputs)
            response = client.ranking_pb2_grpc.RankingServiceStub(chan).Rank(
                request, timeout=args.timeout)
    except ValueError:
        raise
    except Exception as err:  # noqa: BLE001  (grpc.RpcError, reported by _rpc_error)
        return _rpc_error(err, args.server)
    print(client.format_ranking(response))
    return 0


def _loadtest(args: argparse.Namespace) -> int:
    from steadyrank.service import client

    try:
        result = client.parallel_loadtest(
            args.server, args.model, args.concurrency, args.duration, args.processes,
            args.candidates, args.k, args.timeout, args.warmup, args.seed, args.queries)
    except ValueError:
        raise
    except Exception as err:  # noqa: BLE001  (grpc.RpcError, reported by _rpc_error)
        return _rpc_error(err, args.server)
    print(result.table())
    if args.json:
        Path(args.json).write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    if result.errors or not result.latencies:
        print(f"error: {result.errors} of {sum(result.codes.values())} requests failed",
              file=sys.stderr)
        return 1
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Adds ``serve``, ``rank`` and ``loadtest`` to the ``steadyrank`` parser."""
    p = sub.add_parser("serve", help="serve models over gRPC (TF Serving API + ranking API)")
    arguments.add_settings_flags(p, settings.ServerConfig, settings.flag_fields(),
                                 settings.field_help(settings.ServerConfig))
    p.add_argument("--log-level", default="info",
                   choices=["debug", "info", "warning", "error"], help="default info")
    p.set_defaults(handler=_serve)

    p = sub.add_parser("serve-worker", help="one worker process of `serve --workers N` "
                       "(started by its supervisor)")
    p.add_argument("--config-json", required=True, help="the worker's server settings")
    p.add_argument("--log-level", default="info",
                   choices=["debug", "info", "warning", "error"], help="default info")
    p.set_defaults(handler=_serve_worker)

    p = sub.add_parser("rank", help="ask a server for a user's top k items")
    p.add_argument("--server", default=settings.DEFAULT_SERVER,
                   help=f"default {settings.DEFAULT_SERVER}")
    p.add_argument("--model", required=True, help="model name")
    p.add_argument("--version", type=int, default=None, help="model version (default: served)")
    p.add_argument("--user", required=True, help="user id (an int64 or a string, as the "
                   "model's ids are)")
    p.add_argument("--k", type=int, default=10, help="items to return (default 10)")
    p.add_argument("--candidates", default=None,
                   help="comma-separated item ids to rank (default: the whole catalog)")
    p.add_argument("--feature", dest="features", action="append", default=[],
                   metavar="NAME=VALUE", help="a context feature (every one the model "
                   "declares), or a user feature for a user the model has not seen (all of "
                   "them); parsed by its declared dtype, a multi-hot list comma-separated; "
                   "repeatable")
    p.add_argument("--timeout", type=arguments.positive(float), default=10.0,
                   help="deadline in seconds (default 10)")
    p.set_defaults(handler=_rank)

    p = sub.add_parser("loadtest", help="keep C Rank requests in flight; report throughput "
                       "and latency percentiles; exit 1 on any error")
    p.add_argument("--server", default=settings.DEFAULT_SERVER,
                   help=f"default {settings.DEFAULT_SERVER}")
    p.add_argument("--model", required=True, help="model name")
    p.add_argument("--concurrency", type=arguments.positive(int), default=8,
                   help="requests in flight (default 8)")
    p.add_argument("--duration", type=arguments.positive(float), default=10.0,
                   help="seconds to measure (default 10)")
    p.add_argument("--warmup", type=float, default=1.0,
                   help="seconds before measuring (default 1)")
    p.add_argument("--candidates", type=int, default=100,
                   help="random catalog items per request (default 100; 0: whole catalog)")
    p.add_argument("--k", type=arguments.positive(int), default=10, help="default 10")
    p.add_argument("--timeout", type=arguments.positive(float), default=5.0,
                   help="per-request deadline in seconds (default 5)")
    p.add_argument("--seed", type=int, default=0, help="request sampling seed (default 0)")
    p.add_argument("--processes", type=arguments.positive(int), default=1,
                   help="client processes sharing --concurrency, so the client is not the "
                   "bottleneck (default 1)")
    p.add_argument("--queries", type=arguments.positive(int), default=1,
                   help="users per request: > 1 sends batched Rank requests (default 1)")
    p.add_argument("--json", default=None, help="also write the summary to this JSON file")
    p.set_defaults(handler=_loadtest)

    p = sub.add_parser("monitor", help="the live reproducibility monitor for any servers "
                       "that speak TF Serving's API: the same requests to each replica "
                       "(Predict), their PD and top-k swap on /metrics")
    p.add_argument("--model", required=True, help="model name (the same on every replica, "
                   "unless a --replica names its own)")
    p.add_argument("--replica", dest="replicas", action="append", default=[],
                   metavar="LABEL=HOST:PORT[/MODEL]", required=True,
                   help="a replica endpoint; two or more (the first is compared with each "
                   "other)")
    p.add_argument("--metrics-port", type=int, default=8503,
                   help="port of its /metrics (default 8503; 0 picks one; -1: none)")
    p.add_argument("--metrics-host", default="0.0.0.0", help="address of /metrics")
    p.add_argument("--export", default=None, metavar="DIR",
                   help="an export of the model: its schema, catalog and users (default: "
                   "the first replica's GetModelMetadata and catalog)")
    p.add_argument("--requests", default=None, metavar="DIR",
                   help="replay requests recorded by `steadyrank serve --record-requests "
                   "DIR` instead of drawing them")
    p.add_argument("--user-input", default=None, metavar="NAME",
                   help="the user id input, when the signatures alone cannot tell it")
    arguments.add_pacing(p, "as fast as answers come")
    p.add_argument("--limit", type=int, default=0,
                   help="requests to send (default 0: no bound)")
    p.add_argument("--candidates", type=arguments.positive(int), default=100,
                   help="catalog items per drawn request (rows for a model without ids; "
                   "default 100)")
    p.add_argument("--timeout", type=arguments.positive(float), default=10.0,
                   help="per-request deadline in seconds (default 10)")
    p.add_argument("--seed", type=int, default=0, help="request sampling seed (default 0)")
    p.set_defaults(handler=_monitor)
