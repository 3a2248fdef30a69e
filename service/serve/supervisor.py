"""``steadyrank serve --workers N``: worker processes on one port, and their supervisor.

Each worker is a full server (``steadyrank serve-worker``, spawned: TensorFlow is not
fork-safe) that loads and polls its models itself and accepts on the shared port with
``SO_REUSEPORT``; the kernel spreads new connections over the workers. The supervisor:

- holds the port (a bound, never listening ``SO_REUSEPORT`` socket, so port 0 picks one
  port for all and a port taken by another program is an error before anything starts);
- gives the workers one ``PROMETHEUS_MULTIPROC_DIR`` and serves ``/metrics`` for all of
  them (prometheus_client's multiprocess collector), plus its own restart counter;
- keeps health NOT_SERVING until every worker has loaded (the workers wait for its gate
  file);
- restarts a worker that dies, with backoff (1 s doubling to 30 s; back to 1 s after a
  minute up), and forgets the dead process's live gauges;
- recycles a worker that asks for it after ``recycle_after_loads`` version loads (TensorFlow
  keeps ~0.25 MB of every SavedModel load for the life of the process): it starts the
  successor, waits until it has loaded and listens, then drains the old process with
  ``HANDOVER_SIGNAL`` (it stops at once and its clients reconnect to the successor), so the
  port never lacks a listener;
- forwards SIGTERM and SIGINT so every worker drains, and exits 0 when all exited 0.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from steadyrank.service.settings import HANDOVER_SIGNAL

log = logging.getLogger("steadyrank.workers")
BACKOFF_FIRST, BACKOFF_MAX, STABLE_SECONDS = 1.0, 30.0, 60.0


def usable_cores(cgroup: Path = Path("/sys/fs/cgroup")) -> int:
    """The cores this process may use: its CPU affinity, capped by a cgroup CPU quota
    (v2 ``cpu.max``, or v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``), at least 1."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)
    quota = _cgroup_quota(cgroup)
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota)))
    return max(1, cores)


def _cgroup_quota(cgroup: Path) -> float | None:
    """CPUs allowed by the cgroup quota, or None when there is no quota."""
    try:
        v2 = cgroup / "cpu.max"
        if v2.exists():
            quota, period = v2.read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        v1 = cgroup / "cpu" / "cpu.cfs_quota_us"
        if v1.exists():
            quota = int(v1.read_text())
            period = int((cgroup / "cpu" / "cpu.cfs_period_us").read_text())
            return None if quota <= 0 else quota / period
    except (OSError, ValueError):
        return None
    return None


def reserve_port(host: str, port: int) -> socket.socket:
    """A bound (not listening) ``SO_REUSEPORT`` socket on ``host:port``: it holds the port
    for the workers, which bind it too; OSError naming the address if it is taken."""
    name = host.strip("[]") or "::"
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            name, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as err:
        raise OSError(f"cannot listen on {host}:{port}: {err}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
    except OSError as err:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
    return sock


def config_to_json(config: Any) -> str:
    """A ``ServerConfig`` as JSON (paths as strings), for a worker's command line."""
    return json.dumps({k: str(v) if isinstance(v, Path) else v
                       for k, v in dataclasses.asdict(config).items()})


def config_from_json(text: str) -> Any:
    """The ``ServerConfig`` of :func:`config_to_json`."""
    from steadyrank.service.settings import ServerConfig

    values = json.loads(text)
    for field in dataclasses.fields(ServerConfig):
        if field.name in values and values[field.name] is not None and (
                "Path" in str(field.type)):
            values[field.name] = Path(values[field.name])
    return ServerConfig(**values)


def supervisor_metrics(registry: Any) -> tuple[Any, Any]:
    """The supervisor's own metrics on ``registry``: worker restarts (after a death) and
    recycles (a fresh process on request)."""
    from prometheus_client import Counter

    return (Counter("steadyrank_worker_restarts",
                    "Worker processes of steadyrank serve restarted after they died.",
                    registry=registry),
            Counter("steadyrank_worker_recycles",
                    "Worker processes of steadyrank serve replaced by a fresh one after "
                    "their version loads reached --recycle-after-loads.",
                    registry=registry))


@dataclasses.dataclass
class _Worker:
    index: int
    proc: subprocess.Popen | None = None
    generation: int = 0  # which process of this slot: names its ready and recycle files
    started: float = 0.0
    backoff: float = BACKOFF_FIRST
    restart_at: float | None = None
    successor: subprocess.Popen | None = None  # starting, to replace proc (recycling)
    successor_generation: int = 0
    recycle_retry_at: float = 0.0


class Supervisor:
    """Runs ``workers`` server processes of one ``ServerConfig`` until SIGTERM or SIGINT."""

    def __init__(self, config: Any, workers: int, log_level: str = "info") -> None:
        """``config.recycle_after_loads`` > 0 turns recycling on."""
        if workers < 1:
            raise ValueError(f"--workers {workers}: must be >= 1")
        config.validate()
        self.config = config
        self.count = workers
        # N workers share the cores: TensorFlow's intra-op pool gets a share each.
        self.threads_per_worker = max(1, usable_cores() // workers)
        self.log_level = log_level
        self.run_dir = Path(tempfile.mkdtemp(prefix="steadyrank-serve-"))
        self.metrics_dir = self.run_dir / "metrics"
        self.metrics_dir.mkdir()
        self.gate = self.run_dir / "all-ready"
        self.workers = [_Worker(i) for i in range(workers)]
        self.draining: list[subprocess.Popen] = []  # recycled processes finishing their RPCs
        self._generations = 0
        self._stop = False
        self._port_socket: socket.socket | None = None
        self._http: Any = None
        self.port = 0
        self.metrics_port = 0

    def _ready_file(self, generation: int) -> Path:
        return self.run_dir / f"ready-{generation}"

    def _recycle_file(self, generation: int) -> Path:
        return self.run_dir / f"recycle-{generation}"

    def _start_process(self, index: int) -> tuple[subprocess.Popen, int]:
        """Starts a worker process for slot ``index``; (process, its generation)."""
        self._generations += 1
        generation = self._generations
        config = dataclasses.replace(
            self.config, port=self.port, metrics_port=-1, worker=str(index),
            reuse_port=True, ready_file=self._ready_file(generation),
            recycle_file=self._recycle_file(generation),
            serving_gate=self.gate, parent_pid=os.getpid())
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(self.metrics_dir)}
        env.setdefault("TF_NUM_INTRAOP_THREADS", str(self.threads_per_worker))
        proc = subprocess.Popen(
            [sys.executable, "-m", "steadyrank.cli", "serve-worker", "--log-level",
             self.log_level, "--config-json", config_to_json(config)], env=env)
        log.info("worker %d started (pid %d)", index, proc.pid)
        return proc, generation

    def _spawn(self, worker: _Worker) -> None:
        worker.proc, worker.generation = self._start_process(worker.index)
        worker.started = time.monotonic()
        worker.restart_at = None

    def _start_metrics(self) -> None:
        from prometheus_client import CollectorRegistry, start_http_server
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(self.metrics_dir))
        self.restarts, self.recycles = supervisor_metrics(registry)
        if self.config.metrics_port >= 0:
            host = self.config.metrics_host or self.config.host
            self._http, _ = start_http_server(self.config.metrics_port,
                                              addr=host.strip("[]") or "::",
                                              registry=registry)
            self.metrics_port = self._http.server_port

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if not self._stop:
            log.info("received %s: stopping %d workers", signal.Signals(signum).name,
                     self.count)
        self._stop = True

    def _wait_ready(self) -> int | None:
        """None once every worker has written its ready file (then opens the gate); else
        the exit code: a worker's that exited while starting, 0 on a stop signal."""
        while not all(self._ready_file(w.generation).exists() for w in self.workers):
            if self._stop:
                return 0
            for worker in self.workers:
                code = worker.proc.poll() if worker.proc else None
                if code is not None:
                    log.error("worker %d exited with code %d while starting; stopping",
                              worker.index, code)
                    return code or 1
            time.sleep(0.1)
        self.gate.write_text("ok\n")
        return None

    def _reap(self) -> None:
        """Restarts dead workers when their backoff has passed."""
        from prometheus_client import multiprocess

        now = time.monotonic()
        for worker in self.workers:
            proc = worker.proc
            if proc is not None and proc.poll() is not None:
                multiprocess.mark_process_dead(proc.pid, str(self.metrics_dir))
                if now - worker.started >= STABLE_SECONDS:
                    worker.backoff = BACKOFF_FIRST
                log.warning("worker %d (pid %d) exited with code %d; restarting in %.0f s",
                            worker.index, proc.pid, proc.returncode, worker.backoff)
                worker.proc = None
                worker.restart_at = now + worker.backoff
                worker.backoff = min(worker.backoff * 2, BACKOFF_MAX)
            elif (proc is None and worker.successor is None and worker.restart_at is not None
                  and now >= worker.restart_at):
                self.restarts.inc()
                self._spawn(worker)
        self._recycle(now)
        for proc in list(self.draining):
            if proc.poll() is not None:
                multiprocess.mark_process_dead(proc.pid, str(self.metrics_dir))
                self.draining.remove(proc)

    def _recycle(self, now: float) -> None:
        """Starts successors for workers that asked to be recycled; once one has loaded and
        listens, it takes the slot and the old process hands over (``HANDOVER_SIGNAL``: it
        stops at once, so its clients reconnect to the successor, and finishes its calls)."""
        from prometheus_client import multiprocess

        for worker in self.workers:
            if worker.successor is None:
                if (worker.proc is not None and now >= worker.recycle_retry_at
                        and self._recycle_file(worker.generation).exists()):
                    worker.successor, worker.successor_generation = self._start_process(
                        worker.index)
                    log.info("worker %d (pid %d) reached %d version loads: recycling it",
                             worker.index, worker.proc.pid, self.config.recycle_after_loads)
                continue
            successor = worker.successor
            if successor.poll() is not None:
                multiprocess.mark_process_dead(successor.pid, str(self.metrics_dir))
                log.warning("worker %d's successor (pid %d) exited with code %d while "
                            "starting; the old process keeps serving, retry in %.0f s",
                            worker.index, successor.pid, successor.returncode, BACKOFF_MAX)
                worker.successor = None
                worker.recycle_retry_at = now + BACKOFF_MAX
            elif self._ready_file(worker.successor_generation).exists():
                old = worker.proc
                if old is not None and old.poll() is None:
                    old.send_signal(HANDOVER_SIGNAL)
                    self.draining.append(old)
                worker.proc, worker.generation = successor, worker.successor_generation
                worker.successor, worker.started, worker.restart_at = None, now, None
                self.recycles.inc()
                log.info("worker %d recycled: pid %d serves, pid %s drains", worker.index,
                         successor.pid, old.pid if old is not None else "-")

    def _stop_all(self) -> int:
        """SIGTERM to every worker process (starting, serving or draining); waits for them
        to drain; 0 if each exited 0 or of that SIGTERM."""
        procs = [p for w in self.workers for p in (w.proc, w.successor) if p is not None]
        procs += self.draining
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.config.shutdown_grace + 30
        code = 0
        for proc in procs:
            try:
                result = proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker process %d did not stop in time; killing it", proc.pid)
                proc.kill()
                result = proc.wait()
            # A process still starting when the stop came dies of the SIGTERM itself, before
            # its handler is installed: a stop that was asked for, not a failure.
            code = code or (0 if result in (0, -signal.SIGTERM) else 1)
        return code

    def run(self) -> int:
        """Starts the workers, supervises them until a stop signal; the exit code."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        try:
            self._port_socket = reserve_port(self.config.host, self.config.port)
            self.port = self._port_socket.getsockname()[1]
            self._start_metrics()
            for worker in self.workers:
                self._spawn(worker)
            failed = self._wait_ready()
            if failed is not None:
                self._stop_all()
                return failed
            print(f"steadyrank serve: gRPC on port {self.port}, metrics on "
                  f"{f'port {self.metrics_port}' if self.metrics_port else 'no port'} "
                  f"({self.count} workers)", flush=True)
            while not self._stop:
                self._reap()
                time.sleep(0.2)
            return self._stop_all()
        finally:
            if self._http is not None:
                self._http.shutdown()
                self._http.server_close()
            if self._port_socket is not None:
                self._port_socket.close()
            shutil.rmtree(self.run_dir, ignore_errors=True)


def worker_pids(supervisor_pid: int) -> list[int]:
    """The worker processes of a running supervisor (Linux ``/proc``), for tests and tools."""
    path = Path(f"/proc/{supervisor_pid}/task/{supervisor_pid}/children")
    try:
        return [int(p) for p in path.read_text().split()]
    except OSError:
        return []


def serve(config: Any, log_level: str = "info") -> int:
    """``steadyrank serve``: one server process, or ``config.workers`` worker processes (by
    default the usable cores) under a :class:`Supervisor`, which recycles each worker after
    ``config.recycle_after_loads`` version loads (by default
    ``settings.DEFAULT_RECYCLE_AFTER_LOADS``). Returns the exit code."""
    from steadyrank.service.settings import DEFAULT_RECYCLE_AFTER_LOADS

    config.validate()
    count = config.workers if config.workers is not None else usable_cores()
    if count == 1 and not config.recycle_after_loads:
        from steadyrank.service.serve.server import serve as serve_one

        return serve_one(config)
    if config.recycle_after_loads is None:
        config = dataclasses.replace(config, recycle_after_loads=DEFAULT_RECYCLE_AFTER_LOADS)
    return Supervisor(config, count, log_level).run()
