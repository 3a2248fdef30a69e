"""The Prometheus alerting rules: valid for promtool, unit-tested, and about real metrics."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from steadyrank.service.serve.telemetry import ServerMetrics

PROMETHEUS = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
SUFFIXES = ("_bucket", "_count", "_sum", "_total")


def promtool() -> str:
    """The promtool binary; without it, skip, unless CI demands it (STEADYRANK_REQUIRE_TOOLS)."""
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("STEADYRANK_REQUIRE_TOOLS") == "1":
            pytest.fail("promtool not found; install Debian's prometheus package")
        pytest.skip("promtool not found (apt-get install prometheus)")
    return found


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=120,
                          cwd=PROMETHEUS)


def test_rules_pass_promtool_check():
    result = run("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_alerts_fire_and_stay_quiet_as_their_unit_tests_say():
    result = run("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_configs_pass_promtool_check(tmp_path):
    """The compose config (DNS discovery of every server replica) and `make up`'s rewrite."""
    from steadyrank.cli import stack

    result = run("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    local = stack.prometheus_config(tmp_path, 9999)
    result = run("check", "config", str(local))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rejects_a_broken_rule(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("groups:\n  - name: x\n    rules:\n      - alert: X\n"
                      "        expr: rate(steadyrank_requests_total[5m]\n")
    result = subprocess.run([promtool(), "check", "rules", str(broken)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode != 0


def exported_names() -> set[str]:
    """Every sample name the server exports (its workers' and its supervisor's)."""
    from prometheus_client import CollectorRegistry

    from steadyrank.service.serve.supervisor import supervisor_metrics

    registries = [ServerMetrics().registry, CollectorRegistry()]
    supervisor_metrics(registries[1])
    families = [f for r in registries for f in r.collect()]
    return {s.name for f in families for s in f.samples} | {f.name for f in families}


def test_every_alert_names_metrics_the_server_exports():
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    names = exported_names()
    alerts = []
    for group in rules["groups"]:
        for rule in group["rules"]:
            alerts.append(rule.get("alert", rule.get("record")))
            for metric in re.findall(r"\bsteadyrank_[a-z0-9_]+", rule["expr"]):
                base = metric
                for suffix in SUFFIXES:
                    base = base.removesuffix(suffix)
                assert metric in names or base in names, (rule.get("alert"), metric)
            if "alert" in rule:
                assert rule["annotations"]["summary"] and rule["labels"]["severity"]
    for wanted in ("SteadyRankReplicaPredictionDifferenceHigh",
                   "SteadyRankReplicaTop10SwapRateHigh", "SteadyRankReplicaDown",
                   "SteadyRankShadowDrops", "SteadyRankErrorRateHigh",
                   "SteadyRankLatencyP99High"):
        assert wanted in alerts
