"""``steadyrank cluster``: a TensorFlow cluster of local processes on loopback, for trying the
distributed strategies and for tests.

Starts ``ps`` parameter servers and ``workers`` workers (``steadyrank cluster-node``, each
with its own ``TF_CONFIG``), then runs the given ``steadyrank`` command as the chief with the
chief's ``TF_CONFIG`` and ``train.strategy`` set, and stops the nodes when it ends (or on
Ctrl-C). The command's exit code is the cluster's.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from steadyrank.model.training.distributed import ClusterError


def free_ports(count: int) -> list[int]:
    """``count`` distinct free TCP ports on loopback."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def cluster_spec(ps: int, workers: int) -> dict[str, list[str]]:
    """A chief, ``workers`` workers and ``ps`` parameter servers on free loopback ports."""
    if ps < 1 or workers < 1:
        raise ClusterError(f"a cluster needs --ps >= 1 and --workers >= 1, got {ps} and "
                           f"{workers}")
    ports = iter(free_ports(1 + workers + ps))
    return {"chief": [f"127.0.0.1:{next(ports)}"],
            "worker": [f"127.0.0.1:{next(ports)}" for _ in range(workers)],
            "ps": [f"127.0.0.1:{next(ports)}" for _ in range(ps)]}


def tf_config(cluster: dict[str, list[str]], kind: str, index: int) -> str:
    """The ``TF_CONFIG`` of one task."""
    return json.dumps({"cluster": cluster, "task": {"type": kind, "index": index}})


def run(ps: int, workers: int, command: list[str], strategy: str = "parameter-server",
        log_dir: Path | None = None, ready_timeout: float = 120.0) -> int:
    """Runs ``steadyrank COMMAND...`` as the chief of a fresh local cluster; its exit code."""
    if not command:
        raise ClusterError("give the steadyrank command to run, after --, e.g. "
                           "`steadyrank cluster --ps 2 --workers 2 -- train --config ...`")
    cluster = cluster_spec(ps, workers)
    cli = [sys.executable, "-m", "steadyrank.cli"]
    base_env = {**os.environ, "PYTHONUNBUFFERED": "1", "CUDA_VISIBLE_DEVICES": ""}
    nodes: list[subprocess.Popen] = []
    logs = []
    try:
        for kind in ("ps", "worker"):
            for i in range(len(cluster[kind])):
                out = (open(log_dir / f"{kind}-{i}.log", "w")  # noqa: SIM115
                       if log_dir else subprocess.DEVNULL)
                logs.append(out)
                nodes.append(subprocess.Popen(
                    [*cli, "cluster-node"], stdout=out, stderr=subprocess.STDOUT,
                    env={**base_env, "TF_CONFIG": tf_config(cluster, kind, i)}))
        _wait_listening([a for k in ("ps", "worker") for a in cluster[k]], nodes,
                        ready_timeout)
        print(f"[steadyrank cluster] {ps} parameter server(s), {workers} worker(s) up; "
              f"running the chief: steadyrank {' '.join(command)}", file=sys.stderr,
              flush=True)
        chief_env = {**base_env, "TF_CONFIG": tf_config(cluster, "chief", 0)}
        chief = subprocess.Popen([*cli, *command, *_strategy_flag(command, strategy)],
                                 env=chief_env)
        try:
            return chief.wait()
        except KeyboardInterrupt:
            chief.send_signal(signal.SIGINT)
            return chief.wait()
    finally:
        for node in nodes:
            node.terminate()
        for node in nodes:
            try:
                node.wait(10)
            except subprocess.TimeoutExpired:
                node.kill()
        for out in logs:
            if out is not subprocess.DEVNULL:
                out.close()


def _strategy_flag(command: list[str], strategy: str) -> list[str]:
    """``--set train.strategy=...`` for the training commands that read a config."""
    if command[0] in ("train", "compare", "trainer") and not any(
            "train.strategy=" in part for part in command):
        return ["--set", f"train.strategy={strategy}"]
    return []


def _wait_listening(addresses: list[str], nodes: list[subprocess.Popen],
                    timeout: float) -> None:
    end = time.monotonic() + timeout
    pending = list(addresses)
    while pending:
        for node in nodes:
            if node.poll() is not None:
                raise ClusterError(f"a cluster node exited with {node.returncode} at start")
        host, port = pending[0].rsplit(":", 1)
        with socket.socket() as s:
            if s.connect_ex((host, int(port))) == 0:
                pending.pop(0)
                continue
        if time.monotonic() > end:
            raise ClusterError(f"cluster node {pending[0]} did not listen within {timeout:.0f} s")
        time.sleep(0.2)
