"""The serving subcommands: ``serve``, ``rank`` and ``loadtest``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

# Version loads before a worker is replaced (under the supervisor): at ~0.25 MB kept by
# TensorFlow per load, about 25 MB at most; hourly retrains recycle every few days.
DEFAULT_RECYCLE_AFTER_LOADS = 100


def _logging(level: str, worker: str | None = None) -> None:
    who = f"[worker {worker}] " if worker is not None else ""
    logging.basicConfig(level=level.upper(),
                        format=f"%(asctime)s %(levelname)s {who}%(name)s: %(message)s")


def _serve(args: argparse.Namespace) -> int:
    _logging(args.log_level)
    from steadyrank.cli import workers
    from steadyrank.service.config import ServerConfig

    config = ServerConfig(
        model_base_path=Path(args.model_base_path), port=args.port,
        metrics_port=args.metrics_port, host=args.host, poll_seconds=args.poll_seconds,
        batching=not args.no_batching, max_batch_rows=args.max_batch_rows,
        max_queue=args.max_queue, max_wait_ms=args.max_wait_ms,
        model_threads=args.model_threads, max_concurrent_rpcs=args.max_concurrent_rpcs,
        max_candidates=args.max_candidates, max_queries=args.max_queries,
        max_rank_pairs=args.max_rank_pairs,
        max_message_bytes=args.max_message_bytes,
        max_inflight_bytes=args.max_inflight_bytes,
        max_request_elements=args.max_request_elements,
        max_string_bytes=args.max_string_bytes, metrics_host=args.metrics_host,
        handshake_timeout=args.handshake_timeout,
        shutdown_grace=args.shutdown_grace, shadow_rate=args.shadow_rate,
        shadow_queue=args.shadow_queue, churn_rate=args.churn_rate,
        churn_window=args.churn_window, wait_for_models=args.wait_for_models,
        # Acted on only under the supervisor, which gives each worker its recycle file.
        recycle_after_loads=(DEFAULT_RECYCLE_AFTER_LOADS if args.recycle_after_loads is None
                             else args.recycle_after_loads))
    count = args.workers if args.workers is not None else workers.usable_cores()
    if count == 1 and not args.recycle_after_loads:
        from steadyrank.service.server import serve

        return serve(config)
    return workers.Supervisor(config, count, args.log_level).run()


def _serve_worker(args: argparse.Namespace) -> int:
    from steadyrank.cli import workers
    from steadyrank.service.server import serve

    config = workers.config_from_json(args.config_json)
    _logging(args.log_level, config.worker)
    return serve(config)


def _rpc_error(err: Exception, server: str) -> int:
    import grpc

    if isinstance(err, grpc.RpcError):
        print(f"error: {server}: {err.code().name}: {err.details()}", file=sys.stderr)
        return 1
    raise err


def _parse_features(pairs: list[str]) -> dict[str, object]:
    features: dict[str, object] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ValueError(f"--feature {pair!r}: expected NAME=VALUE")
        features[name] = int(value) if name == "age" and value.lstrip("-").isdigit() else value
    return features


def _rank(args: argparse.Namespace) -> int:
    from steadyrank.service import client

    candidates = ([int(c) for c in args.candidates.split(",") if c.strip()]
                  if args.candidates else None)
    features = _parse_features(args.features)
    request = client.rank_request(args.model, args.user, args.k, candidates, features,
                                  args.version)
    try:
        with client.channel(args.server) as chan:
            response = client.ranking_pb2_grpc.RankingServiceStub(chan).Rank(
                request, timeout=args.timeout)
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


def _positive(kind: type) -> object:
    def parse(text: str) -> object:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text}: must be > 0")
        return value
    parse.__name__ = kind.__name__
    return parse


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Adds ``serve``, ``rank`` and ``loadtest`` to the ``steadyrank`` parser."""
    p = sub.add_parser("serve", help="serve models over gRPC (TF Serving API + ranking API)")
    p.add_argument("--model-base-path", default="models",
                   help="folder of models in TF Serving layout NAME/VERSION/; NAME-b is the "
                   "second replica of NAME (default: models)")
    p.add_argument("--port", type=int, default=8500, help="gRPC port (default 8500)")
    p.add_argument("--metrics-port", type=int, default=8502,
                   help="Prometheus /metrics port (default 8502; -1: none)")
    p.add_argument("--host", default="[::]", help="address to listen on (default [::])")
    p.add_argument("--metrics-host", default=None,
                   help="address of the metrics endpoint (default: --host)")
    p.add_argument("--workers", type=_positive(int), default=None,
                   help="server processes accepting on the port (SO_REUSEPORT) under one "
                   "supervisor, with one metrics endpoint (default: the usable cores, "
                   "honouring CPU affinity and cgroup quotas; 1: a single process)")
    p.add_argument("--recycle-after-loads", type=int, default=None, metavar="N",
                   help="replace a worker process by a fresh one after N model version "
                   "loads (the successor starts and loads first, then the old one drains): "
                   "TensorFlow keeps ~0.25 MB of every load for the life of a process "
                   f"(default {DEFAULT_RECYCLE_AFTER_LOADS} with --workers > 1; 0: never; "
                   "with --workers 1 a value > 0 runs the one worker under a supervisor)")
    p.add_argument("--poll-seconds", type=float, default=2.0,
                   help="how often to look for new versions (default 2; 0: never)")
    p.add_argument("--no-batching", action="store_true",
                   help="one model call per request (the naive baseline)")
    p.add_argument("--max-batch-rows", type=int, default=8192,
                   help="most (user, item) pairs per model call (default 8192)")
    p.add_argument("--max-queue", type=int, default=1024,
                   help="requests waiting for the model before RESOURCE_EXHAUSTED "
                   "(default 1024)")
    p.add_argument("--max-wait-ms", type=float, default=0.0,
                   help="how long a batch waits to fill up (default 0: take what is queued)")
    p.add_argument("--model-threads", type=int, default=1,
                   help="model calls running at once (default 1)")
    p.add_argument("--max-concurrent-rpcs", type=int, default=4096,
                   help="RPCs in progress before RESOURCE_EXHAUSTED (default 4096)")
    p.add_argument("--max-candidates", type=int, default=10_000,
                   help="most candidate items in one Rank request (default 10000)")
    p.add_argument("--max-queries", type=int, default=256,
                   help="most queries (users) in one batched Rank request (default 256)")
    p.add_argument("--max-rank-pairs", type=int, default=100_000,
                   help="most (user, item) pairs one batched Rank request scores, over all "
                   "its queries (default 100000)")
    p.add_argument("--max-message-bytes", type=int, default=64 << 20,
                   help="largest request or response in bytes (default 64 MiB; TF Serving "
                   "allows 2 GiB, which a few requests would turn into many GiB of memory)")
    p.add_argument("--max-inflight-bytes", type=int, default=256 << 20,
                   help="request bytes being handled at once; more is refused with "
                   "RESOURCE_EXHAUSTED, not queued (default 256 MiB)")
    p.add_argument("--max-request-elements", type=int, default=100_000,
                   help="elements of one Predict input or Regress examples, checked on the "
                   "declared shape before decoding (default 100000)")
    p.add_argument("--max-string-bytes", type=int, default=1 << 20,
                   help="bytes of the strings of one Predict input (default 1 MiB)")
    p.add_argument("--handshake-timeout", type=float, default=10.0,
                   help="seconds a connection has to start HTTP/2 before it is closed "
                   "(default 10)")
    p.add_argument("--shutdown-grace", type=float, default=30.0,
                   help="seconds in-flight requests get to finish on SIGTERM (default 30)")
    p.add_argument("--shadow-rate", type=float, default=0.1,
                   help="fraction of Rank requests also scored by the second replica NAME-b "
                   "to measure replica disagreement (default 0.1; 0: off)")
    p.add_argument("--shadow-queue", type=int, default=256,
                   help="sampled requests waiting for shadow scoring before drops "
                   "(default 256)")
    p.add_argument("--churn-rate", type=float, default=0.1,
                   help="fraction of Rank requests also scored by the replaced version during "
                   "the churn window after a version switch (default 0.1; 0: off)")
    p.add_argument("--churn-window", type=float, default=600.0,
                   help="seconds the replaced version is kept after a switch to measure churn "
                   "(default 600; 0: off)")
    p.add_argument("--wait-for-models", type=float, default=0.0, metavar="SECONDS",
                   help="before serving, wait up to this long for a first model version "
                   "(beside a trainer that has not exported yet; default 0: do not wait)")
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
    p.add_argument("--server", default="localhost:8500", help="default localhost:8500")
    p.add_argument("--model", required=True, help="model name")
    p.add_argument("--version", type=int, default=None, help="model version (default: served)")
    p.add_argument("--user", type=int, required=True, help="user id")
    p.add_argument("--k", type=int, default=10, help="items to return (default 10)")
    p.add_argument("--candidates", default=None,
                   help="comma-separated item ids to rank (default: the whole catalog)")
    p.add_argument("--feature", dest="features", action="append", default=[],
                   metavar="NAME=VALUE", help="user feature for a new user: gender, "
                   "occupation, zip, age (all four; repeatable)")
    p.add_argument("--timeout", type=_positive(float), default=10.0,
                   help="deadline in seconds (default 10)")
    p.set_defaults(handler=_rank)

    p = sub.add_parser("loadtest", help="keep C Rank requests in flight; report throughput "
                       "and latency percentiles; exit 1 on any error")
    p.add_argument("--server", default="localhost:8500", help="default localhost:8500")
    p.add_argument("--model", required=True, help="model name")
    p.add_argument("--concurrency", type=_positive(int), default=8,
                   help="requests in flight (default 8)")
    p.add_argument("--duration", type=_positive(float), default=10.0,
                   help="seconds to measure (default 10)")
    p.add_argument("--warmup", type=float, default=1.0,
                   help="seconds before measuring (default 1)")
    p.add_argument("--candidates", type=int, default=100,
                   help="random catalog items per request (default 100; 0: whole catalog)")
    p.add_argument("--k", type=_positive(int), default=10, help="default 10")
    p.add_argument("--timeout", type=_positive(float), default=5.0,
                   help="per-request deadline in seconds (default 5)")
    p.add_argument("--seed", type=int, default=0, help="request sampling seed (default 0)")
    p.add_argument("--processes", type=_positive(int), default=1,
                   help="client processes sharing --concurrency, so the client is not the "
                   "bottleneck (default 1)")
    p.add_argument("--queries", type=_positive(int), default=1,
                   help="users per request: > 1 sends batched Rank requests (default 1)")
    p.add_argument("--json", default=None, help="also write the summary to this JSON file")
    p.set_defaults(handler=_loadtest)
