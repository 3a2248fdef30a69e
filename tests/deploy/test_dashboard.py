"""The Grafana files and the compose file, checked by their documented formats.

Grafana itself cannot run here; these checks cover what it would reject or show empty: the
provisioning files (datasource and dashboard provider, apiVersion 1), the dashboard JSON
(unique panel ids, every datasource reference on the provisioned uid, every query naming
metrics the server exports), and the compose services, ports and volumes. The queries
themselves run against a live Prometheus in tests/deploy/test_compose.py.
"""

import json
import re
from pathlib import Path

import yaml

from steadyrank.service.serve.telemetry import ServerMetrics

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "steadyrank.json"
SUFFIXES = ("_bucket", "_count", "_sum", "_total")


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def datasource() -> dict:
    config = yaml.safe_load((GRAFANA / "provisioning" / "datasources" /
                             "prometheus.yml").read_text())
    assert config["apiVersion"] == 1
    (source,) = config["datasources"]
    return source


# The row whose panels only a following trainer (stream mode) feeds.
CONTINUOUS_ROW = "Continuous training"


def queries(dash: dict, *, skip_row: str | None = None) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every query panel, less those under a row whose title
    starts with ``skip_row``."""
    out, row = [], ""
    for panel in dash["panels"]:
        if panel["type"] == "row":
            row = panel["title"]
        elif not (skip_row and row.startswith(skip_row)):
            out += [(panel["title"], t["expr"]) for t in panel["targets"]]
    return out


def continuous_queries(dash: dict) -> list[tuple[str, str]]:
    """The queries of the continuous-training row alone."""
    every = queries(dash)
    rest = set(queries(dash, skip_row=CONTINUOUS_ROW))
    return [q for q in every if q not in rest]


def exported() -> set[str]:
    families = list(ServerMetrics().registry.collect())
    return {f.name for f in families} | {s.name for f in families for s in f.samples}


def test_datasource_provisioning():
    source = datasource()
    assert source["type"] == "prometheus" and source["access"] == "proxy"
    assert source["url"] == "http://prometheus:9090"  # the compose service
    assert source["uid"] and source["isDefault"] is True


def test_dashboard_provider_points_at_the_mounted_folder():
    config = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" /
                             "steadyrank.yml").read_text())
    assert config["apiVersion"] == 1
    (provider,) = config["providers"]
    assert provider["type"] == "file"
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    grafana = compose["services"]["grafana"]
    mounts = dict(v.split(":")[:2][::-1] for v in grafana["volumes"])
    assert mounts[provider["options"]["path"]] == "./deploy/grafana/dashboards"
    assert mounts["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{provider['options']['path']}/{DASHBOARD.name}"  # opens on it


def test_panel_ids_unique_and_datasources_provisioned():
    dash = dashboard()
    assert dash["uid"] == "steadyrank" and dash["title"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    uid = datasource()["uid"]
    for panel in dash["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == uid, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == uid, panel["title"]
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, panel["title"]


def test_every_query_names_metrics_the_server_exports():
    names = exported()
    for title, expr in queries(dashboard()):
        found = re.findall(r"\bsteadyrank_[a-z0-9_]+", expr)
        assert found, title
        for metric in found:
            base = metric
            for suffix in SUFFIXES:
                base = base.removesuffix(suffix)
            assert metric in names or base in names, (title, metric)


def test_the_dashboard_has_the_panels_the_issue_lists():
    titles = " | ".join(p["title"] for p in dashboard()["panels"]).lower()
    for words in ("relative pd between replicas", "top-k swap rate", "version churn",
                  "request rate", "latency p50 / p99", "error rate by code", "batch size",
                  "shadow pairs scored and dropped", "loaded versions",
                  "training runs and their offline pd"):
        assert words in titles, words


def test_the_continuous_training_row_charts_every_follow_gauge():
    charted = " ".join(expr for _, expr in continuous_queries(dashboard()))
    follow = {name for name in exported() if name.startswith("steadyrank_follow_")}
    assert follow, "the server exports no steadyrank_follow_* gauge"
    assert {name for name in follow if name not in charted} == set()
    # and no panel outside the row depends on a following trainer
    rest = " ".join(expr for _, expr in queries(dashboard(), skip_row=CONTINUOUS_ROW))
    assert "steadyrank_follow_" not in rest


def test_compose_services_ports_and_volumes():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"trainer", "server", "lb", "traffic", "prometheus", "grafana",
                             "monitor"}
    # The TF Serving monitor is opt-in (`--profile monitor`), scraped as its own job.
    monitor = services["monitor"]
    assert monitor["profiles"] == ["monitor"] and monitor["command"][0] == "monitor"
    assert [a for a in monitor["command"] if a.startswith("--replica=")] == [
        "--replica=a=lb:8500/ml", "--replica=b=lb:8500/ml-b"]
    scrape = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in scrape["scrape_configs"]}
    assert jobs["steadyrank-monitor"]["dns_sd_configs"][0]["names"] == ["monitor"]
    assert "--metrics-port=8503" in monitor["command"]
    ports = {p.split(":")[0]: name for name, s in services.items() for p in s.get("ports", [])}
    assert ports == {"3000": "grafana", "8500": "lb", "9090": "prometheus"}
    # `--scale server=N`: no fixed host port on the server; clients and traffic use the
    # balancer, which routes to every replica of the `server` service.
    assert "ports" not in services["server"]
    assert services["traffic"]["command"][1] == "--server=lb:8500"
    nginx = (REPO / "deploy" / "lb" / "nginx.conf").read_text()
    assert re.search(r"grpc_pass grpc://\$\w+;", nginx)
    assert re.search(r"set \$\w+ server:8500;", nginx)
    assert "resolver 127.0.0.11" in nginx  # Docker's DNS: replicas are re-resolved
    mount = services["lb"]["volumes"][0].split(":")
    assert mount[0] == "./deploy/lb/nginx.conf" and mount[1] in services["lb"]["command"]
    assert services["lb"]["image"].startswith("${LB_IMAGE:-nginx:")
    assert {"models", "data"} <= set(compose["volumes"])
    assert all("restart" in s for s in services.values())
    assert "health" in services["server"]["healthcheck"]["test"]
    assert services["traffic"]["depends_on"]["server"]["condition"] == "service_healthy"
    assert services["prometheus"]["image"].startswith("${PROMETHEUS_IMAGE:-prom/prometheus:")
    assert services["grafana"]["image"].startswith("${GRAFANA_IMAGE:-grafana/grafana:")
    password = services["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"]
    assert password.startswith("${GRAFANA_ADMIN_PASSWORD:?")  # no default password
    example = (REPO / ".env.example").read_text()
    assert re.search(r"^GRAFANA_ADMIN_PASSWORD=$", example, re.M)


def test_dockerfile_is_multi_stage_non_root_and_compiler_free_at_runtime():
    text = (REPO / "deploy" / "Dockerfile").read_text()
    assert "ARG BASE_IMAGE=python:3.11-slim" in text
    stages = re.split(r"^FROM ", text, flags=re.M)[1:]
    assert len(stages) == 2 and " AS build" in stages[0] and " AS runtime" in stages[1]
    assert "g++" in stages[0] and "steadyrank.ops.build" in stages[0]
    runtime = stages[1]
    assert "g++" not in runtime and "apt-get install" not in runtime
    assert re.search(r"^USER steadyrank$", runtime, re.M)
