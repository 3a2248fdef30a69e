"""`steadyrank up --stream` (what `make up STREAM=1` runs): a live Criteo-shaped stream, a
trainer that follows it, and the dashboard's continuous-training row proven against a real
Prometheus scraping the server."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from steadyrank.cli import stack
from tests.conftest import REPO
from tests.deploy.test_dashboard import continuous_queries, dashboard
from tests.deploy.test_stack import free_port


def prometheus_binary() -> str:
    """The prometheus binary; without it, skip, unless CI demands it."""
    found = shutil.which("prometheus")
    if not found:
        if os.environ.get("STEADYRANK_REQUIRE_TOOLS"):
            pytest.fail("prometheus not found; install Debian's prometheus package")
        pytest.skip("prometheus not found (apt-get install prometheus)")
    return found


def promql(port: int, expr: str) -> list:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        answer = json.loads(urllib.request.urlopen(url, timeout=10).read())
    except OSError:
        return []
    assert answer["status"] == "success", (expr, answer)
    return answer["data"]["result"]


def test_stream_flags_match_the_compose_override():
    override = yaml.safe_load((REPO / "deploy" / "compose.stream.yml").read_text())
    command = override["services"]["stream"]["command"]
    flags = [part for flag in command if flag.startswith("--") for part in flag.split("=", 1)]
    for name, value in zip(stack.STREAM_SPEC[::2], stack.STREAM_SPEC[1::2], strict=True):
        assert flags[flags.index(name) + 1] == value, name
    trainer = override["services"]["trainer"]["command"]
    assert f"--config={stack.STREAM_CONFIG}" in trainer
    assert '--set=data.train=["/data/stream/part-*.parquet"]' in trainer
    traffic = override["services"]["traffic"]["command"]
    assert f"--config={stack.STREAM_CONFIG}" in traffic


def test_stream_commands(tmp_path):
    cfg = stack.StackConfig(config=REPO / stack.STREAM_CONFIG, work=tmp_path, stream=True,
                            stream_every=30, traffic_rate=0)
    cmds = stack.commands(cfg, prometheus=None)
    assert set(cmds) == {"stream", "trainer", "server"}
    assert cmds["stream"][-4:] == ["--out", str(tmp_path / "data" / "stream"), "--every",
                                   "30"]
    assert f'data.train=["{tmp_path / "data" / "stream" / "part-*.parquet"}"]' in \
        cmds["trainer"]
    with pytest.raises(ValueError, match="--stream-every 0"):
        stack.StackConfig(config=REPO / stack.STREAM_CONFIG, stream=True,
                          stream_every=0).validate()
    shown = subprocess.run(["make", "-n", "up", "STREAM=1"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout
    assert "steadyrank.cli up" in shown and "--stream" in shown


def test_up_stream_follows_shards_and_fills_the_continuous_training_row(tmp_path):
    prometheus_binary()
    port, metrics, prom = free_port(), free_port(), free_port()
    work: Path = tmp_path / "run"
    log = tmp_path / "up.log"
    argv = [sys.executable, "-m", "steadyrank.cli", "up", "--stream", "--stream-every", "15",
            "--work", str(work), "--port", str(port), "--metrics-port", str(metrics),
            "--prometheus-port", str(prom), "--traffic-rate", "2",
            "--set", "model.deep_layers=[16]"]
    with open(log, "w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        # Two published rounds: the second is validated on its newest shard by the first
        # (progressive log loss) and measured against it (churn).
        end = time.monotonic() + 900
        while not promql(prom, 'steadyrank_follow_round{model="clicks"} >= 2'):
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < end, log.read_text()[-3000:]
            time.sleep(5)
        # The stream's Criteo schema has no users or items, so no rankings and no top-k
        # swap (the trainer measures churn as relative PD alone): that target stays empty.
        swap = "steadyrank_retrain_churn_topk_swap_rate"
        empty = [q for q in continuous_queries(dashboard()) if swap not in q[1]]
        assert len(empty) >= 7
        assert not promql(prom, swap)
        end = time.monotonic() + 120
        while empty and time.monotonic() < end:
            empty = [(title, expr) for title, expr in empty if not promql(prom, expr)]
            if empty:
                time.sleep(5)
        assert not empty, f"continuous-training panels without data: {empty}"
        shards = sorted(p.name for p in (work / "data" / "stream").glob("part-*.parquet"))
        assert shards[:2] == ["part-00000.parquet", "part-00001.parquet"]
        text = log.read_text()
        assert "stream | " in text and "version 2: published" in text
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=180)
    assert code == 0, log.read_text()[-3000:]
