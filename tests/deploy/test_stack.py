"""Running the service: waiting for models, health, traffic, and `steadyrank up` natively."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import grpc
import pytest
import yaml

from steadyrank.cli import stack
from steadyrank.cli.main import main as cli_main
from steadyrank.service import client
from steadyrank.service.client import probe, traffic
from steadyrank.service.serve.server import ServerConfig, ServerThread
from steadyrank.service.stubs import ranking_pb2_grpc
from tests.conftest import REPO, data_overrides, train_small_models


@pytest.fixture(scope="module")
def trained(tiny_data, tmp_path_factory):
    """An export of a small MovieLens model (version 1 under the returned folder)."""
    return train_small_models(tiny_data, tmp_path_factory, prefix="stack-models") / "ml" / "1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(base, **settings):
    config = ServerConfig(model_base_path=base, port=0, metrics_port=-1, host="127.0.0.1",
                          poll_seconds=0.2, **settings)
    thread = ServerThread(config)
    return thread, thread.start()


def test_server_waits_for_the_first_export(trained, tmp_path):
    base = tmp_path / "models"
    base.mkdir()

    def publish_later():
        time.sleep(1.5)
        shutil.copytree(trained, base / "ml" / ".tmp")
        os.rename(base / "ml" / ".tmp", base / "ml" / "1")

    threading.Thread(target=publish_later).start()
    started = time.monotonic()
    thread, srv = start(base, wait_for_models=60)
    try:
        assert time.monotonic() - started >= 1.4
        assert srv.manager.get("ml").version == 1  # serving from the first answer on
        assert probe.health(f"127.0.0.1:{srv.port}", "ml") == ""
    finally:
        thread.stop(grace=1)


def test_waiting_for_models_times_out_with_a_message(tmp_path):
    config = ServerConfig(model_base_path=tmp_path, port=0, metrics_port=-1,
                          host="127.0.0.1", wait_for_models=1)
    with pytest.raises(TimeoutError, match="no model version appeared under"):
        ServerThread(config).start()


def test_health_names_what_is_missing(trained, tmp_path, capsys):
    base = tmp_path / "models"
    shutil.copytree(trained, base / "ml" / "1")
    thread, srv = start(base)
    address = f"127.0.0.1:{srv.port}"
    try:
        assert probe.health(address) == ""
        assert "not served" in probe.health(address, "nope")
        assert cli_main(["health", "--server", address, "--model", "ml"]) == 0
        assert cli_main(["health", "--server", address, "--model", "nope"]) == 1
        assert "nope" in capsys.readouterr().err
    finally:
        thread.stop(grace=1)
    assert "UNAVAILABLE" in probe.health(address, timeout=1)  # nothing listens now


def test_traffic_sends_rank_and_predict_at_the_rate(trained, tmp_path):
    base = tmp_path / "models"
    shutil.copytree(trained, base / "ml" / "1")
    thread, srv = start(base)
    try:
        lines = []
        stats = traffic.run(f"127.0.0.1:{srv.port}", "ml", rate=40, duration=2.0,
                            candidates=50, predict_share=0.3, report_every=1.0,
                            log=lines.append)
        codes = dict(stats.codes)
        sent = sum(codes.values())
        assert 70 <= sent <= 82  # 40/s for 2 s, open loop
        assert set(codes) == {("Rank", "OK"), ("Predict", "OK")}
        assert 0.15 < codes[("Predict", "OK")] / sent < 0.45
        answered = srv.metrics.requests.labels("Rank", "OK")._value.get()
        assert answered == codes[("Rank", "OK")]
        assert any(line.startswith("traffic:") for line in lines)
    finally:
        thread.stop(grace=1)
    with pytest.raises(ValueError, match="--rate"):
        traffic.run("127.0.0.1:1", "ml", rate=0)


def test_traffic_gives_up_on_a_server_that_never_answers():
    port = free_port()
    with pytest.raises(TimeoutError, match="did not serve model"):
        traffic.run(f"127.0.0.1:{port}", "ml", rate=1, ready_timeout=0.5, log=lambda _: None)


def test_stack_commands_and_prometheus_config(tmp_path):
    cfg = stack.StackConfig(config=REPO / "configs" / "smelu.toml", work=tmp_path,
                            metrics_port=9999, traffic_rate=0, overrides=["train.epochs=1"])
    cmds = stack.commands(cfg, prometheus="/usr/bin/prometheus")
    assert set(cmds) == {"trainer", "server", "prometheus"}  # rate 0: no traffic
    assert cmds["trainer"][-2:] == ["--set", "train.epochs=1"]
    text = (tmp_path / "prometheus.yml").read_text()
    jobs = {job["job_name"]: job for job in yaml.safe_load(text)["scrape_configs"]}
    assert jobs["steadyrank"]["static_configs"] == [{"targets": ["localhost:9999"]}]
    assert "dns_sd_configs" not in jobs["steadyrank"]  # compose's discovery, replaced
    assert str(REPO / "deploy" / "prometheus" / "alerts.yml") in text
    assert "traffic" in stack.commands(stack.StackConfig(work=tmp_path), None)
    with pytest.raises(ValueError, match="--config"):
        stack.StackConfig(config=tmp_path / "none.toml").validate()
    with pytest.raises(ValueError, match="--port 0"):
        stack.StackConfig(config=REPO / "configs" / "smelu.toml", port=0).validate()


def test_make_up_trains_serves_and_stops_on_ctrl_c(tiny_data, tmp_path):
    """`steadyrank up` (what `make up` runs) with a fast training config."""
    port, metrics, prom = free_port(), free_port(), free_port()
    work = tmp_path / "run"
    log = tmp_path / "up.log"
    argv = [sys.executable, "-m", "steadyrank.cli", "up", "--work", str(work), "--port",
            str(port), "--metrics-port", str(metrics), "--prometheus-port", str(prom),
            "--traffic-rate", "10", *data_overrides(tiny_data),
            "--set", "train.epochs=1", "--set", "model.deep_layers=[16]"]
    with open(log, "w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        address = f"127.0.0.1:{port}"
        end = time.monotonic() + 600
        while probe.health(address, "ml-b", timeout=1) and time.monotonic() < end:
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(2)
        assert probe.health(address, "ml-b") == "", log.read_text()[-3000:]
        with client.channel(address) as chan:
            answer = ranking_pb2_grpc.RankingServiceStub(chan).Rank(
                client.rank_request("ml", 1, 5), timeout=30)
        assert len(answer.items) == 5 and answer.replica == "a"
        text = log.read_text()
        assert f"gRPC on localhost:{port}" in text
        assert f"http://localhost:{metrics}/metrics" in text
        page = urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics",
                                      timeout=10).read().decode()
        assert "steadyrank_model_offline_prediction_difference_relative" in page
        if shutil.which("prometheus"):
            ready = urllib.request.urlopen(f"http://127.0.0.1:{prom}/-/ready", timeout=10)
            assert ready.status == 200
        else:
            assert "no prometheus binary on the PATH" in text
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=120)
    assert code == 0, log.read_text()[-3000:]
    assert "stopped (exit 0)" in log.read_text()
    with pytest.raises(grpc.RpcError):  # the server is gone with it
        with client.channel(f"127.0.0.1:{port}") as chan:
            ranking_pb2_grpc.RankingServiceStub(chan).Rank(client.rank_request("ml", 1, 5),
                                                           timeout=2)


def test_traffic_at_rate_zero_idles_until_stopped(tmp_path):
    log = tmp_path / "traffic.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "steadyrank.cli", "traffic", "--rate",
                                 "0"], stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        end = time.monotonic() + 60
        while "rate 0: sending nothing" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < end, log.read_text()
            time.sleep(0.2)
        proc.terminate()
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    with pytest.raises(SystemExit):
        cli_main(["traffic", "--rate", "-1"])


def test_make_up_and_compose_take_another_config():
    import yaml

    from tests.conftest import REPO

    shown = subprocess.run(["make", "-n", "up", "CONFIG=configs/shop.toml"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout
    assert "steadyrank.cli up --config configs/shop.toml" in shown
    default = subprocess.run(["make", "-n", "up"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout
    assert "--config" not in default  # the stack's default: configs/smelu.toml
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    trainer = compose["services"]["trainer"]
    assert "--config=${CONFIG:-configs/smelu.toml}" in trainer["command"]
    assert "${USER_DATA:-./userdata}:/userdata:ro" in trainer["volumes"]
