"""``steadyrank serve``: the gRPC server, its metrics endpoint, and graceful shutdown.

The server is asyncio gRPC: request handling runs on one event loop, model calls in model
threads (see :mod:`steadyrank.service.serve.batching`), model loading in a polling thread.

Services: ``tensorflow.serving.PredictionService``, ``tensorflow.serving.ModelService``,
``steadyrank.RankingService``, ``grpc.health.v1.Health`` and server reflection. Metrics are
served over HTTP at ``:METRICS_PORT/metrics``. On SIGTERM or SIGINT the server reports
NOT_SERVING and answers new RPCs UNAVAILABLE, lets in-flight ones finish, stops the gRPC server
once clients have gone quiet (up to the grace period), then drains the batch queue and exits.
On ``HANDOVER_SIGNAL`` (a supervisor replacing the process) it stops at once instead.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2
from grpc_reflection.v1alpha import reflection, reflection_pb2
from grpc_reflection.v1alpha._async import ReflectionServicer
from prometheus_client import start_http_server
from tensorflow_serving.apis import model_service_pb2, prediction_service_pb2

from steadyrank.service.recorded_requests import RequestRecorder
from steadyrank.service.serve.batching import Batcher, DirectScorer
from steadyrank.service.serve.manager import ModelManager, has_versions
from steadyrank.service.serve.prediction import ModelServicer, PredictionServicer
from steadyrank.service.serve.ranking_api import RankingServicer, ranking_pb2
from steadyrank.service.serve.rpc import Drain
from steadyrank.service.serve.shadow import ShadowScorer
from steadyrank.service.serve.telemetry import ServerMetrics
from steadyrank.service.serve.tensors import Limits
from steadyrank.service.serve.unknown_ids import UnknownIds
from steadyrank.service.serve.wire import Admission, Wire
from steadyrank.service.settings import HANDOVER_SIGNAL, ServerConfig, body_limits

# A stop waits until no call has arrived for this long before it stops the gRPC server.
DRAIN_QUIET_SECONDS = 0.25
log = logging.getLogger("steadyrank.server")
SERVICES = (
    prediction_service_pb2.DESCRIPTOR.services_by_name["PredictionService"].full_name,
    model_service_pb2.DESCRIPTOR.services_by_name["ModelService"].full_name,
    ranking_pb2.DESCRIPTOR.services_by_name["RankingService"].full_name,
)


class Server:
    """A SteadyRank server (gRPC plus the metrics endpoint), run on an asyncio loop."""

    def __init__(self, config: ServerConfig) -> None:
        config.validate()
        self.config = config
        self.metrics = ServerMetrics(worker=config.worker)
        self.manager = ModelManager(config.model_base_path, self.metrics, config.poll_seconds,
                                    churn_seconds=config.churn_window,
                                    on_load=self._count_load)
        self._loads = 0
        self.scorer: Batcher | DirectScorer = (
            Batcher(self.metrics, config.max_batch_rows, config.max_queue,
                    config.max_wait_ms / 1000, config.model_threads)
            if config.batching else DirectScorer(self.metrics, config.model_threads,
                                                 config.max_queue))
        self.wire = Wire(Admission(config.max_message_bytes, config.max_inflight_bytes,
                                   self.metrics, body_limits(config)), self.metrics)
        self.shadow = ShadowScorer(self.manager, self.metrics, config.shadow_rate,
                                   config.shadow_queue, churn_rate=config.churn_rate)
        self.recorder = None
        if config.record_requests is not None:
            folder = Path(config.record_requests)
            if config.worker is not None:  # each worker its own files
                folder = folder / f"worker-{config.worker}"
            self.recorder = RequestRecorder(folder, config.record_rate, config.record_files)
        self.health = health.aio.HealthServicer()
        self.drain = Drain()
        self.port = 0
        self.metrics_port = 0
        self._grpc: grpc.aio.Server | None = None
        self._http: Any = None
        self._stopping = False
        self._gate: asyncio.Task | None = None

    def _count_load(self) -> None:
        """Counts version loads; at ``recycle_after_loads`` asks the supervisor (once) to
        replace this worker by writing its recycle file."""
        self._loads += 1
        config = self.config
        if (config.recycle_file is not None and config.recycle_loads > 0
                and self._loads == config.recycle_loads):
            config.recycle_file.write_text(f"{self._loads}\n")
            log.info("%d version loads: asking for a fresh worker process (TensorFlow keeps "
                     "memory of every SavedModel load)", self._loads)

    async def start(self) -> Server:
        """Loads the models there are, then starts serving; returns self.

        With ``wait_for_models`` it first waits (up to that many seconds) for a version
        folder to appear; TimeoutError if none does.
        """
        loop = asyncio.get_running_loop()
        if self.config.wait_for_models > 0:
            await self._wait_for_models()
        await loop.run_in_executor(None, self.manager.start)
        # The loaded models are long-lived: keep the cyclic GC from rescanning them on the
        # request path (shorter GC pauses, a better tail latency).
        gc.collect()
        gc.freeze()
        await self.scorer.start()
        self.shadow.start()
        if self.recorder is not None:
            self.recorder.start()
        handshake_ms = int(self.config.handshake_timeout * 1000)
        options = [("grpc.max_send_message_length", self.config.max_message_bytes),
                   ("grpc.max_receive_message_length", self.config.max_message_bytes),
                   ("grpc.so_reuseport", int(self.config.reuse_port)),
                   # A connection that never completes its handshake, or never sends the
                   # HTTP/2 preface, is closed after this long.
                   ("grpc.server_handshake_timeout_ms", handshake_ms),
                   ("grpc.http2.settings_timeout", handshake_ms)]
        self._grpc = grpc.aio.server(options=options,
                                     maximum_concurrent_rpcs=self.config.max_concurrent_rpcs)
        limits = Limits(self.config.max_request_elements, self.config.max_string_bytes)
        unknown_ids = UnknownIds(self.config.unknown_ids, self.metrics)
        services = [
            (prediction_service_pb2, "PredictionService",
             PredictionServicer(self.manager, self.scorer, self.metrics, limits, self.shadow,
                                unknown_ids, self.recorder)),
            (model_service_pb2, "ModelService", ModelServicer(self.manager, self.metrics)),
            (ranking_pb2, "RankingService",
             RankingServicer(self.manager, self.scorer, self.metrics,
                             self.config.max_candidates, self.shadow,
                             self.config.max_queries, self.config.max_rank_pairs,
                             unknown_ids, self.recorder)),
            (health_pb2, "Health", self.health),
            (reflection_pb2, "ServerReflection", ReflectionServicer(
                (*SERVICES, health.SERVICE_NAME, reflection.SERVICE_NAME))),
        ]
        for module, service, servicer in services:
            servicer.drain = self.drain  # read by the rpc wrapper of every handler
            self.wire.add_service(self._grpc, module.DESCRIPTOR.services_by_name[service],
                                  servicer)
        address = f"{self.config.host}:{self.config.port}"
        try:
            self.port = self._grpc.add_insecure_port(address)
        except RuntimeError as err:
            raise OSError(f"cannot listen on {address}: {err}") from None
        await self._grpc.start()
        gate = self.config.serving_gate
        if gate is not None and not gate.exists():
            await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
            self._gate = asyncio.ensure_future(self._open_gate(gate))
        else:
            await self._set_health(health_pb2.HealthCheckResponse.SERVING)
        if self.config.ready_file is not None:
            self.config.ready_file.write_text(f"{self.port}\n")
        if self.config.metrics_port >= 0:
            host = self.config.metrics_host or self.config.host
            self._http, _ = start_http_server(self.config.metrics_port,
                                              addr=host.strip("[]") or "::",
                                              registry=self.metrics.registry)
            self.metrics_port = self._http.server_port
        log.info("serving on port %d (metrics on %s), models: %s", self.port,
                 self.metrics_port or "none", ", ".join(self.manager.names()) or "none yet")
        return self

    async def _set_health(self, status: int) -> None:
        for service in ("", *SERVICES):
            await self.health.set(service, status)

    async def _open_gate(self, gate: Path) -> None:
        """SERVING once ``gate`` exists (the supervisor writes it when every worker is up)."""
        while not gate.exists():
            await asyncio.sleep(0.1)
        if not self._stopping:
            await self._set_health(health_pb2.HealthCheckResponse.SERVING)

    async def _wait_for_models(self) -> None:
        base, timeout = self.config.model_base_path, self.config.wait_for_models
        started = time.monotonic()
        next_note = started
        while not has_versions(base):
            now = time.monotonic()
            if now - started >= timeout:
                raise TimeoutError(f"no model version appeared under {base} within "
                                   f"{timeout:.0f} s (--wait-for-models)")
            if now >= next_note:
                log.info("waiting for a model version under %s (up to %.0f s more)", base,
                         timeout - (now - started))
                next_note = now + 30
            await asyncio.sleep(1.0)

    async def stop(self, grace: float | None = None, drain: bool = True) -> None:
        """Graceful stop. ``drain`` (SIGTERM): new calls are answered UNAVAILABLE and health
        turns NOT_SERVING first; once the calls in flight are done and clients have gone
        quiet (or ``grace`` is over) the gRPC server stops. Without ``drain`` (a hand-over to
        a successor process) it stops at once, so clients reconnect to the successor, and
        the calls in flight finish (up to ``grace``). Then the batch queue drains."""
        if self._stopping:
            return
        self._stopping = True
        if self._gate is not None:
            self._gate.cancel()
        grace = self.config.shutdown_grace if grace is None else grace
        until = time.monotonic() + grace
        if drain:
            log.info("shutting down: answering new calls UNAVAILABLE, finishing in-flight "
                     "ones (up to %.0f s)", grace)
            self.drain.draining = True
            await self.health.enter_graceful_shutdown()
            # Calls the gRPC core has taken in but no handler has yet are CANCELLED when it
            # stops (grpc/grpc#41785): wait until the calls in flight are done and none has
            # arrived for a moment (clients that read the health status have gone), or the
            # grace period is over.
            while time.monotonic() < until and (self.drain.in_flight > 0 or
                                                self.drain.quiet_for() < DRAIN_QUIET_SECONDS):
                await asyncio.sleep(0.02)
        else:
            log.info("handing over: stopping now, finishing in-flight requests (up to %.0f s)",
                     grace)
            await self.health.enter_graceful_shutdown()
        if self._grpc is not None:
            await self._grpc.stop(max(0.0, until - time.monotonic()))
        await self.scorer.stop()
        self.wire.close()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.shadow.stop)
        if self.recorder is not None:
            await loop.run_in_executor(None, self.recorder.stop)
        await loop.run_in_executor(None, self.manager.stop)
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        log.info("stopped")


class ServerThread:
    """A :class:`Server` on its own event loop in a background thread (tests, benchmarks)."""

    def __init__(self, config: ServerConfig) -> None:
        self.server = Server(config)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="server-loop",
                                        daemon=True)

    def start(self) -> Server:
        """Starts the loop and the server; returns the server once it listens."""
        self._thread.start()
        return asyncio.run_coroutine_threadsafe(self.server.start(), self._loop).result()

    def stop(self, grace: float | None = None) -> None:
        """Stops the server gracefully, then the loop."""
        asyncio.run_coroutine_threadsafe(self.server.stop(grace), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


async def _watch_parent(parent: int, done: asyncio.Event) -> None:
    """Sets ``done`` when the process's parent (a worker's supervisor) is gone."""
    while os.getppid() == parent:
        await asyncio.sleep(1.0)
    log.warning("the supervisor (pid %d) is gone; stopping", parent)
    done.set()


async def _serve(config: ServerConfig) -> int:
    server = Server(config)
    done = asyncio.Event()
    received: list[int] = []
    loop = asyncio.get_running_loop()

    def stop_on(signum: int) -> None:
        received.append(signum)
        done.set()

    for signum in (signal.SIGTERM, signal.SIGINT, HANDOVER_SIGNAL):
        loop.add_signal_handler(signum, stop_on, signum)
    watcher = (asyncio.ensure_future(_watch_parent(config.parent_pid, done))
               if config.parent_pid is not None else None)
    starting = asyncio.ensure_future(server.start())
    stopping = asyncio.ensure_future(done.wait())
    await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if not starting.done():  # stopped while waiting for models
        starting.cancel()
        log.info("received a stop signal before serving")
        return 0
    stopping.cancel()
    if isinstance(starting.exception(), TimeoutError):
        log.error("%s", starting.exception())
        return 1
    starting.result()
    if config.worker is None:  # a worker's supervisor announces the port of all of them
        print(f"steadyrank serve: gRPC on port {server.port}, metrics on "
              f"{f'port {server.metrics_port}' if server.metrics_port else 'no port'}",
              flush=True)
    await done.wait()
    log.info("received %s", signal.Signals(received[0]).name if received else "a stop")
    if watcher is not None:
        watcher.cancel()
    await server.stop(drain=not received or received[0] != HANDOVER_SIGNAL)
    return 0


def serve(config: ServerConfig) -> int:
    """Runs a server until SIGTERM or SIGINT, then stops it gracefully; the exit code."""
    config.validate()
    return asyncio.run(_serve(config))
