"""``steadyrank serve --workers N``: cores, the shared port, the supervisor, shared metrics."""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from steadyrank.service import client
from steadyrank.service.serve import supervisor as workers
from steadyrank.service.serve.server import ServerConfig, ServerThread
from steadyrank.service.stubs import ranking_pb2_grpc
from tests.conftest import kill_serve, serve_ports, start_serve, train_small_models, wait_for


def test_usable_cores_honours_affinity_and_cgroup_quotas(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1, 2, 3, 4, 5})
    v2 = tmp_path / "v2"
    v2.mkdir()
    assert workers.usable_cores(v2) == 6  # no cgroup files: the affinity
    (v2 / "cpu.max").write_text("max 100000\n")
    assert workers.usable_cores(v2) == 6
    (v2 / "cpu.max").write_text("250000 100000\n")
    assert workers.usable_cores(v2) == 3  # 2.5 CPUs of quota: 3 workers
    (v2 / "cpu.max").write_text("20000 100000\n")
    assert workers.usable_cores(v2) == 1
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("200000\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert workers.usable_cores(v1) == 2
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert workers.usable_cores(v1) == 6
    (v2 / "cpu.max").write_text("garbage\n")
    assert workers.usable_cores(v2) == 6  # unreadable: no quota
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {3})
    assert workers.usable_cores(tmp_path / "none") == 1


def test_worker_config_round_trips_through_json(tmp_path):
    config = ServerConfig(model_base_path=tmp_path, port=1234, ready_file=tmp_path / "r",
                          max_queries=7, metrics_host="127.0.0.1")
    back = workers.config_from_json(workers.config_to_json(config))
    assert back == config and isinstance(back.ready_file, Path)


def test_reserve_port_holds_a_port_the_workers_can_share_and_refuses_a_taken_one():
    first = workers.reserve_port("127.0.0.1", 0)
    try:
        port = first.getsockname()[1]
        second = workers.reserve_port("127.0.0.1", port)  # SO_REUSEPORT: shared
        second.close()
        plain = socket.socket()
        plain.bind(("127.0.0.1", 0))
        plain.listen()
        with pytest.raises(OSError, match=rf"cannot listen on 127.0.0.1:{plain.getsockname()[1]}"):
            workers.reserve_port("127.0.0.1", plain.getsockname()[1])
        plain.close()
    finally:
        first.close()


def test_the_supervisor_loads_no_tensorflow():
    """The supervisor only spawns and watches: its modules stay light (its workers hold the
    models), so N workers cost N runtimes, not N + 1."""
    code = ("import sys\nfrom steadyrank.cli import main\nfrom steadyrank.service.serve import "
            "supervisor\nfrom steadyrank.service import settings\n"
            "import prometheus_client.multiprocess\n"
            "print(sorted(m for m in ('tensorflow', 'grpc', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert out.strip() == "[]"


def test_cli_refuses_zero_workers(capsys):
    from steadyrank.cli.main import main

    assert main(["serve", "--workers", "0"]) == 2
    assert "--workers must be >= 1, got 0" in capsys.readouterr().err


@pytest.fixture(scope="module")
def models(tiny_data, tmp_path_factory):
    return train_small_models(tiny_data, tmp_path_factory)


def _health(port):
    with client.channel(f"127.0.0.1:{port}") as chan:
        return health_pb2_grpc.HealthStub(chan).Check(
            health_pb2.HealthCheckRequest(), timeout=5).status


def test_a_worker_reports_not_serving_until_the_gate_opens(models, tmp_path):
    gate, ready = tmp_path / "all-ready", tmp_path / "ready-0"
    thread = ServerThread(ServerConfig(model_base_path=models, port=0, metrics_port=-1,
                                       host="127.0.0.1", serving_gate=gate, ready_file=ready))
    srv = thread.start()
    try:
        assert ready.read_text().strip() == str(srv.port)
        assert _health(srv.port) == health_pb2.HealthCheckResponse.NOT_SERVING
        with client.channel(f"127.0.0.1:{srv.port}") as chan:  # it answers all the same
            assert ranking_pb2_grpc.RankingServiceStub(chan).Rank(
                client.rank_request("ml", 1, 3), timeout=30).items
        gate.write_text("ok\n")
        assert wait_for(lambda: _health(srv.port) == health_pb2.HealthCheckResponse.SERVING,
                        timeout=5)
    finally:
        thread.stop(grace=1)


def _scrape(port):
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()


def _value(text, series):
    found = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
    return float(found.group(1)) if found else None


def _rank_on_new_channels(port, count):
    """``count`` Rank calls, each on a connection of its own (spread over the workers)."""
    codes = []
    for i in range(count):
        with client.channel(f"127.0.0.1:{port}") as chan:
            try:
                ranking_pb2_grpc.RankingServiceStub(chan).Rank(
                    client.rank_request("ml", 1 + i % 5, 3), timeout=30)
                codes.append("OK")
            except grpc.RpcError as err:
                codes.append(err.code().name)
    return codes


def test_workers_share_a_port_switch_versions_restart_and_drain(models, tmp_path):
    base = tmp_path / "models"
    shutil.copytree(models, base)
    log = tmp_path / "serve.log"
    proc = start_serve(log, "--workers", "2", "--model-base-path", str(base),
                       "--metrics-port", "0", "--poll-seconds", "0.5", "--shutdown-grace", "5")
    try:
        port, metrics_port = serve_ports(log)
        assert "(2 workers)" in log.read_text()
        first = workers.worker_pids(proc.pid)
        assert len(first) == 2
        assert wait_for(lambda: _health(port) == health_pb2.HealthCheckResponse.SERVING,
                        timeout=5)  # the workers see the supervisor's gate within 0.1 s
        assert _rank_on_new_channels(port, 12) == ["OK"] * 12
        text = _scrape(metrics_port)
        assert _value(text, 'steadyrank_requests_total{code="OK",method="Rank"}') == 12
        for w in ("0", "1"):  # each worker's own model state, by worker
            assert _value(text, 'steadyrank_model_version_state{error="0",model="ml",'
                          f'state="AVAILABLE",version="1",worker="{w}"}}') == 1

        # A new version under load: no failed request, and every worker switches.
        result = {}
        load = threading.Thread(target=lambda: result.update(r=client.loadtest(
            f"127.0.0.1:{port}", "ml", 4, 8.0, warmup=0.0, pool=[
                client.rank_request("ml", u, 5) for u in range(1, 30)])))
        load.start()
        time.sleep(2)
        shutil.copytree(base / "ml" / "1", base / "ml" / ".2.tmp")
        (base / "ml" / ".2.tmp").rename(base / "ml" / "2")
        load.join()
        assert result["r"].errors == 0 and result["r"].latencies
        assert wait_for(lambda: all(_value(
            _scrape(metrics_port), 'steadyrank_model_version_state{error="0",model="ml",'
            f'state="AVAILABLE",version="2",worker="{w}"}}') == 1 for w in ("0", "1")),
            timeout=60)

        # A killed worker: the other keeps answering; the supervisor restarts it.
        os.kill(first[0], signal.SIGKILL)
        assert wait_for(lambda: first[0] not in workers.worker_pids(proc.pid), timeout=10)
        assert _rank_on_new_channels(port, 10) == ["OK"] * 10
        assert wait_for(lambda: _value(_scrape(metrics_port),
                                       "steadyrank_worker_restarts_total") == 1, timeout=30)
        assert wait_for(lambda: len(workers.worker_pids(proc.pid)) == 2, timeout=10)
        second = workers.worker_pids(proc.pid)
        assert first[1] in second and first[0] not in second
        assert wait_for(lambda: "worker 0] steadyrank.server: serving on port" in
                        log.read_text().split("restarting in")[-1], timeout=240)
        assert _rank_on_new_channels(port, 6) == ["OK"] * 6

        # SIGTERM drains every worker; exit 0; no worker left behind.
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=90) == 0, log.read_text()[-3000:]
        assert log.read_text().count("steadyrank.server: stopped") == 2
        assert not any(Path(f"/proc/{pid}").exists() for pid in second)
    finally:
        kill_serve(proc)


def _rank_until(port, stop, codes):
    """Rank calls back to back on one channel until ``stop``; appends each call's code."""
    with client.channel(f"127.0.0.1:{port}") as chan:
        stub = ranking_pb2_grpc.RankingServiceStub(chan)
        i = 0
        while not stop.is_set():
            i += 1
            try:
                stub.Rank(client.rank_request("ml", 1 + i % 30, 5), timeout=30)
                codes.append("OK")
            except grpc.RpcError as err:
                codes.append(f"{err.code().name}: {err.details()}")


def test_a_worker_is_recycled_after_n_loads_without_a_failed_request(models, tmp_path):
    """``--workers 1 --recycle-after-loads 2``: the second version load makes the worker ask
    for a fresh process; the successor loads and listens before the old one drains, so
    requests under load never fail, even with one worker."""
    base = tmp_path / "models"
    shutil.copytree(models, base)
    log = tmp_path / "serve.log"
    proc = start_serve(log, "--workers", "1", "--recycle-after-loads", "2",
                       "--model-base-path", str(base), "--metrics-port", "0",
                       "--poll-seconds", "0.5", "--shutdown-grace", "5")
    try:
        port, metrics_port = serve_ports(log)
        assert "(1 workers)" in log.read_text()
        first = workers.worker_pids(proc.pid)
        assert len(first) == 1
        stop, codes = threading.Event(), []
        load = [threading.Thread(target=_rank_until, args=(port, stop, codes))
                for _ in range(3)]
        for thread in load:
            thread.start()
        time.sleep(1)
        shutil.copytree(base / "ml" / "1", base / "ml" / ".2.tmp")
        (base / "ml" / ".2.tmp").rename(base / "ml" / "2")
        assert wait_for(lambda: "recycled: pid" in log.read_text(), timeout=240), \
            log.read_text()[-3000:]
        assert wait_for(lambda: first[0] not in workers.worker_pids(proc.pid), timeout=60)
        time.sleep(2)  # requests go on, now reaching the successor
        stop.set()
        for thread in load:
            thread.join(timeout=60)
        assert set(codes) == {"OK"} and len(codes) > 20, sorted(set(codes))
        second = workers.worker_pids(proc.pid)
        assert len(second) == 1 and second != first
        text = _scrape(metrics_port)
        assert _value(text, "steadyrank_worker_recycles_total") == 1
        assert _value(text, "steadyrank_worker_restarts_total") == 0
        assert "version loads: asking for a fresh worker process" in log.read_text()
        assert _rank_on_new_channels(port, 4) == ["OK"] * 4
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=90) == 0, log.read_text()[-3000:]
        assert log.read_text().count("steadyrank.server: stopped") == 2  # old and new
    finally:
        kill_serve(proc)


def test_stop_counts_a_process_killed_by_its_own_sigterm_as_stopped(models):
    """A successor still starting when SIGTERM comes dies of it (no handler yet): exit 0;
    a worker that fails its drain makes the exit code 1."""
    sup = workers.Supervisor(ServerConfig(model_base_path=models, shutdown_grace=1), 1)
    starting = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    draining = subprocess.Popen([sys.executable, "-c", "import signal, sys, time; "
                                 "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0)); "
                                 "time.sleep(60)"])
    time.sleep(0.5)  # the handler is installed
    sup.workers[0].successor, sup.draining = starting, [draining]
    assert sup._stop_all() == 0
    assert starting.returncode == -signal.SIGTERM and draining.returncode == 0
    failing = subprocess.Popen([sys.executable, "-c", "import signal, sys, time; "
                                "signal.signal(signal.SIGTERM, lambda *a: sys.exit(3)); "
                                "time.sleep(60)"])
    time.sleep(0.5)
    sup.workers[0].successor, sup.draining = None, [failing]
    assert sup._stop_all() == 1
    shutil.rmtree(sup.run_dir)
