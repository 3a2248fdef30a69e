"""``steadyrank up``: the compose stack as local processes, for machines without Docker.

Starts the trainer (fetches MovieLens 100K, trains and publishes replicas A and B), the
server (which waits for the first export), the traffic generator, and Prometheus if a
``prometheus`` binary is on the PATH, with the same rules as the compose stack. With
``stream`` (``make up STREAM=1``, as ``deploy/compose.stream.yml`` for compose) a ``stream``
process appends a Criteo-shaped shard every ``stream_every`` seconds under ``WORK/data/stream``
and the trainer follows them (``configs/stream.toml``). Every
child's output goes to ``WORK/logs/NAME.log`` and, prefixed with its name, to the console.
Ctrl-C (or SIGTERM) stops them all: SIGTERM first, SIGKILL after a grace period.
"""

from __future__ import annotations

import importlib.resources
import os
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from steadyrank.service.settings import DEFAULT_METRICS_PORT, DEFAULT_PORT

# deploy/prometheus in a checkout, installed as the package data steadyrank.prometheus.
PROMETHEUS_DIR = Path(str(importlib.resources.files("steadyrank.prometheus")))
# The live stream of `up --stream` (the flags of deploy/compose.stream.yml's stream service).
STREAM_SPEC = ("--schema", "criteo", "--rows", "2000000", "--shard-rows", "20000", "--seed", "7")
STREAM_CONFIG = Path("configs/stream.toml")
DEFAULT_CONFIG = Path("configs/smelu.toml")
# The server discovery of deploy/prometheus/prometheus.yml (every compose replica, by DNS),
# replaced by the local server's address for `steadyrank up`.
COMPOSE_DISCOVERY = f"""    dns_sd_configs:
      - names: ["server"]
        type: A
        port: {DEFAULT_METRICS_PORT}
        refresh_interval: 10s
"""


@dataclass
class StackConfig:
    """Settings of ``steadyrank up`` (the CLI flags of the same names)."""

    config: Path = DEFAULT_CONFIG
    work: Path = Path("run")
    port: int = DEFAULT_PORT
    metrics_port: int = DEFAULT_METRICS_PORT
    prometheus_port: int = 9090
    traffic_rate: float = 5.0
    retrain_interval: float = 0.0
    overrides: list[str] = field(default_factory=list)
    grace: float = 30.0
    stream: bool = False
    stream_every: float = 120.0

    @property
    def model_name(self) -> str:
        """The model the trainer publishes: the config's [serving] name, else its stem."""
        from steadyrank.model.config import load

        return load(self.config, self.overrides).model_name(self.config)

    def validate(self) -> None:
        """ValueError naming the first bad setting."""
        if not self.config.is_file():
            raise ValueError(f"--config {self.config}: no such file")
        for name in ("port", "metrics_port", "prometheus_port"):
            if not 1 <= getattr(self, name) <= 65535:
                raise ValueError(f"--{name.replace('_', '-')} {getattr(self, name)}: not a port")
        if self.traffic_rate < 0 or self.retrain_interval < 0:
            raise ValueError("--traffic-rate and --retrain-interval must be >= 0")
        if self.stream_every <= 0:
            raise ValueError(f"--stream-every {self.stream_every}: must be > 0 seconds")


class Child:
    """A child process whose output is copied to a log file and the console."""

    def __init__(self, name: str, argv: list[str], log_dir: Path, console: IO[str]) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "a")  # noqa: SIM115  (closed when the copier ends)
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, bufsize=1, start_new_session=True,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self._copier = threading.Thread(target=self._copy, args=(console,), daemon=True)
        self._copier.start()

    def _copy(self, console: IO[str]) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._log.write(line)
            self._log.flush()
            console.write(f"{self.name:>10} | {line}")
            console.flush()
        self._log.close()

    def stop(self, grace: float) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._copier.join(5)


def prometheus_config(work: Path, metrics_port: int) -> Path:
    """deploy/prometheus/prometheus.yml pointed at the local server; written under ``work``."""
    text = (PROMETHEUS_DIR / "prometheus.yml").read_text()
    if COMPOSE_DISCOVERY not in text:
        raise ValueError(f"{PROMETHEUS_DIR / 'prometheus.yml'}: the server discovery block "
                         "steadyrank up replaces is missing")
    text = text.replace(COMPOSE_DISCOVERY, "    static_configs:\n"
                        f'      - targets: ["localhost:{metrics_port}"]\n')
    text = text.replace("alerts.yml", str(PROMETHEUS_DIR / "alerts.yml"))
    path = work / "prometheus.yml"
    path.write_text(text)
    return path


def commands(cfg: StackConfig, prometheus: str | None) -> dict[str, list[str]]:
    """The argv of every process of the stack, by name."""
    cli = [sys.executable, "-m", "steadyrank.cli"]
    models, data = cfg.work / "models", cfg.work / "data"
    shards = data / "stream"
    given = [f"data.data_dir={data}",
             *([f'data.train=["{shards / "part-*.parquet"}"]'] if cfg.stream else []),
             *cfg.overrides]
    sets = [a for o in given for a in ("--set", o)]
    out = {}
    if cfg.stream:
        out["stream"] = [*cli, "data", "synth", *STREAM_SPEC, "--out", str(shards),
                         "--every", str(cfg.stream_every)]
    out |= {
        "trainer": [*cli, "trainer", "--config", str(cfg.config), "--models", str(models),
                    "--retrain-interval", str(cfg.retrain_interval), *sets,
                    *(["--poll-seconds", "10"] if cfg.stream else [])],
        "server": [*cli, "serve", "--model-base-path", str(models), "--port", str(cfg.port),
                   "--metrics-port", str(cfg.metrics_port), "--wait-for-models", "86400"],
    }
    if cfg.traffic_rate > 0:
        out["traffic"] = [*cli, "traffic", "--server", f"localhost:{cfg.port}", "--rate",
                          str(cfg.traffic_rate), "--model", cfg.model_name]
    if prometheus:
        out["prometheus"] = [
            prometheus, f"--config.file={prometheus_config(cfg.work, cfg.metrics_port)}",
            f"--storage.tsdb.path={cfg.work / 'prometheus'}",
            f"--web.listen-address=:{cfg.prometheus_port}"]
    return out


def up(cfg: StackConfig, console: IO[str] = sys.stdout) -> int:
    """Runs the stack until Ctrl-C/SIGTERM (0) or until a needed process fails (1)."""
    cfg.validate()
    for folder in ("models", "data", "logs"):
        (cfg.work / folder).mkdir(parents=True, exist_ok=True)
    prometheus = shutil.which("prometheus")
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT,
                                                                    signal.SIGTERM)}
    children: list[Child] = []
    code = 0
    try:
        for name, argv in commands(cfg, prometheus).items():
            children.append(Child(name, argv, cfg.work / "logs", console))
        print(f"steadyrank up: gRPC on localhost:{cfg.port}, metrics at "
              f"http://localhost:{cfg.metrics_port}/metrics, logs in {cfg.work / 'logs'}",
              file=console, flush=True)
        if prometheus:
            print(f"steadyrank up: Prometheus at http://localhost:{cfg.prometheus_port}",
                  file=console, flush=True)
        else:
            print("steadyrank up: no prometheus binary on the PATH, so no Prometheus; get "
                  "one with `sudo apt-get install prometheus` (Debian/Ubuntu) or from "
                  "https://prometheus.io/download/ and run `make up` again",
                  file=console, flush=True)
        print("steadyrank up: first training takes a few minutes; then try "
              f"`steadyrank rank --server localhost:{cfg.port} --model {cfg.model_name} "
              "--user USER`. "
              "Ctrl-C stops everything.", file=console, flush=True)
        code = _watch(children, stop, console)
    finally:
        for child in reversed(children):
            child.stop(cfg.grace)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(f"steadyrank up: stopped (exit {code})", file=console, flush=True)
    return code


def _watch(children: list[Child], stop: threading.Event, console: IO[str]) -> int:
    """Waits for a stop signal or a failure; the exit code."""
    while not stop.wait(0.5):
        for child in children:
            rc = child.proc.poll()
            if rc is None or (child.name in ("trainer", "stream") and rc == 0):
                continue
            print(f"steadyrank up: {child.name} exited with {rc}; see {child.log_path}",
                  file=console, flush=True)
            return 1
    return 0
