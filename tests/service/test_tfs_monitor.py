"""`steadyrank monitor` against two `steadyrank serve` processes reached through TF Serving's
API alone (the stand-ins for stock TF Serving), and the server's request recorder."""

import numpy as np
import pytest
from tensorflow_serving.apis import prediction_service_pb2_grpc

from steadyrank.cli.main import main as cli_main
from steadyrank.model.artifact import reader
from steadyrank.model.measures import metrics as repro
from steadyrank.service import client
from steadyrank.service import recorded_requests as recorder
from steadyrank.service.client.monitor import (
    MonitorError,
    parse_replica,
    run_monitor,
    schema_from_metadata,
)
from tests.conftest import (
    eval_columns,
    kill_serve,
    serve_ports,
    small_config,
    start_serve,
    wait_for,
)


@pytest.fixture(scope="module")
def replicas(tiny_data, tmp_path_factory):
    """Replica A and B of one config in two model bases, each served by its own process
    (A records every request it answers)."""
    from steadyrank.model.data.splits import prepare_data
    from steadyrank.model.training.workflow import train_and_export

    work = tmp_path_factory.mktemp("monitor")
    config = small_config(tiny_data)
    prepared = prepare_data(config)
    for label, seed in (("a", 1), ("b", 2)):
        train_and_export(config, seed, work / label / "ml", work / f"ck-{label}",
                         prepared=prepared, log=lambda m: None)
    record = work / "recorded"
    procs, ports = [], []
    try:
        for label in ("a", "b"):
            flags = ["--model-base-path", str(work / label), "--metrics-port", "-1",
                     "--workers", "1", "--shadow-rate", "0"]
            if label == "a":
                flags += ["--record-requests", str(record), "--record-rate", "1"]
            log = work / f"serve-{label}.log"
            procs.append(start_serve(log, *flags))
            ports.append(serve_ports(log)[0])
        yield work, prepared, ports, record, procs
    finally:
        for proc in procs:
            kill_serve(proc)


def _hist(metric, *labels):
    child = metric.labels(*labels)
    return sum(b.get() for b in child._buckets), child._sum.get()


def test_monitor_pd_of_recorded_requests_equals_the_offline_pd(replicas):
    work, prepared, ports, record, procs = replicas
    rows = eval_columns(prepared)
    n = recorder.REQUESTS_PER_FILE  # one file's worth of single-row requests
    users, items = rows.user_id[:n], rows.item_id[:n]
    with client.channel(f"127.0.0.1:{ports[0]}") as chan:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(chan)
        for u, i in zip(users, items, strict=True):
            client.predict_signature(stub, "ml", "serving_default", user_id=np.array([u]),
                                     item_id=np.array([i]))
    assert wait_for(lambda: recorder.model_files(record, "ml"), timeout=60)
    recorded = list(recorder.read(record, "ml"))
    assert len(recorded) == n and not any(r.ranked for r in recorded)
    np.testing.assert_array_equal([r.rows["item_id"][0] for r in recorded], items)
    metrics = run_monitor("ml", [f"a=127.0.0.1:{ports[0]}", f"b=127.0.0.1:{ports[1]}"], -1,
                          requests=str(record), rate=0, limit=n, log=lambda m: None)
    count, total = _hist(metrics.replica.pd_relative, "ml", "1", "1")
    a, b = reader.load(work / "a" / "ml"), reader.load(work / "b" / "ml")
    inputs = {"user_id": users, "item_id": items}
    offline = repro.relative_pd(a.score(inputs), b.score(inputs))
    assert count == n and total / count == pytest.approx(offline, rel=1e-5)
    assert offline > 0  # two different replicas
    assert metrics.pairs.labels("ml")._value.get() == n


@pytest.mark.parametrize("source", ["export", "metadata"])
def test_monitor_draws_ranked_requests_from_the_schema(replicas, source):
    work, _, ports, _, _ = replicas
    metrics = run_monitor("ml", [f"a=127.0.0.1:{ports[0]}", f"b=127.0.0.1:{ports[1]}"], -1,
                          export=str(work / "a" / "ml") if source == "export" else None,
                          rate=0, limit=12, candidates=40, log=lambda m: None)
    assert _hist(metrics.replica.pd_relative, "ml", "1", "1")[0] == 12
    count, total = _hist(metrics.replica.topk_swap, "ml", "1", "1", "10")
    assert count == 12 and 0 < total < 12  # rankings differ, but not entirely
    assert _hist(metrics.replica.kendall_tau, "ml", "1", "1")[0] == 12


def test_bad_replies_and_dead_replicas_are_counted_not_fatal(replicas):
    work, _, ports, _, _ = replicas
    metrics = run_monitor("ml", [f"a=127.0.0.1:{ports[0]}", f"b=127.0.0.1:{ports[1]}/nope",
                                 "c=127.0.0.1:1"], -1, export=str(work / "a" / "ml"),
                          rate=0, limit=3, candidates=10, timeout=2, log=lambda m: None)
    assert metrics.errors.labels("b", "rpc")._value.get() == 3  # NOT_FOUND: no such model
    assert metrics.errors.labels("c", "rpc")._value.get() == 3  # nothing listens
    assert metrics.requests.labels("b", "NOT_FOUND")._value.get() == 3
    assert metrics.pairs.labels("ml")._value.get() == 0


def test_replica_arguments_and_schema_errors(replicas, capsys):
    _, _, ports, _, _ = replicas
    assert parse_replica("b=host:9/other", "ml").model == "other"
    for bad in ("host:9", "b=host", "b=:9", "b=host:x"):
        with pytest.raises(MonitorError, match="expected LABEL=HOST:PORT"):
            parse_replica(bad, "ml")
    with client.channel(f"127.0.0.1:{ports[0]}") as chan:
        schema = schema_from_metadata(chan, "ml")
        assert (schema.user, schema.item) == ("user_id", "item_id") and schema.ranks
        with pytest.raises(MonitorError, match="--user-input 'age'"):
            schema_from_metadata(chan, "ml", user_input="age")
    assert cli_main(["monitor", "--model", "ml", "--replica", f"a=127.0.0.1:{ports[0]}",
                     "--metrics-port", "-1"]) == 2
    assert "two or more --replica" in capsys.readouterr().err
    assert cli_main(["monitor", "--model", "ml", "--replica", "a=nohost",
                     "--replica", "b=x:1"]) == 2
    assert "expected LABEL=HOST:PORT" in capsys.readouterr().err
    assert cli_main(["monitor", "--model", "ml", "--replica", "a=x:1", "--replica", "b=x:2",
                     "--requests", "/nonexistent", "--metrics-port", "-1"]) == 2
    assert "no recorded requests of model 'ml'" in capsys.readouterr().err


def test_the_monitor_command_serves_metrics_and_stops_cleanly_on_sigterm(replicas, tmp_path):
    import re
    import signal
    import subprocess
    import sys
    import urllib.request

    work, _, ports, _, _ = replicas
    log = tmp_path / "monitor.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "steadyrank.cli", "monitor", "--model", "ml",
             "--replica", f"a=127.0.0.1:{ports[0]}", "--replica", f"b=127.0.0.1:{ports[1]}",
             "--export", str(work / "a" / "ml"), "--metrics-port", "0",
             "--metrics-host", "127.0.0.1", "--rate", "20", "--candidates", "20"],
            stdout=out, stderr=subprocess.STDOUT)
    try:
        assert wait_for(lambda: "metrics on port" in log.read_text(), timeout=120), \
            log.read_text()[-2000:]
        port = int(re.search(r"metrics on port (\d+)", log.read_text()).group(1))

        def compared() -> bool:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                          timeout=5).read().decode()
            return 'steadyrank_monitor_pairs_total{model="ml"}' in text and \
                'steadyrank_replica_topk_swap_rate_count{k="10"' in text

        assert wait_for(compared, timeout=60), (log.read_text()[-3000:], urllib.request.urlopen(
            f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()[-3000:])
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    assert code == 0, log.read_text()[-2000:]
    assert "done:" in log.read_text()
