"""The live monitor end to end: offline-online agreement, version churn, replica status.

The agreement test replays the eval split through a live server at shadow rate 1.0 and
requires the PD and swap rate that the metrics endpoint reports to match the report of
``steadyrank compare`` on the same two exports: exactly for the means (``_sum / _count``),
and within one bucket for the median a PromQL ``histogram_quantile`` would give.
"""

import json
import shutil
import time
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

from steadyrank.cli.main import main as cli_main
from steadyrank.model.artifact import reader
from steadyrank.model.config import load as load_config
from steadyrank.model.data import synth
from steadyrank.model.data.splits import prepare_data
from steadyrank.model.measures import metrics as repro
from steadyrank.service import client
from steadyrank.service.serve.server import ServerConfig, ServerThread
from steadyrank.service.stubs import ranking_pb2_grpc
from tests.conftest import eval_columns, wait_for

RANK_USERS = 40



def start(base, **settings):
    config = ServerConfig(model_base_path=base, port=0, metrics_port=0, host="127.0.0.1",
                          poll_seconds=0.2, **settings)
    thread = ServerThread(config)
    return thread, thread.start()


def scrape(srv) -> dict:
    """{(metric sample name, frozenset of labels): value} from the metrics endpoint."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{srv.metrics_port}/metrics",
                                  timeout=10).read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def series(samples: dict, name: str, **labels) -> dict:
    """The samples of ``name`` whose labels include ``labels``: {label set: value}."""
    want = set(labels.items())
    return {lb: v for (n, lb), v in samples.items() if n == name and want <= lb}


def total(samples: dict, name: str, **labels) -> float:
    return sum(series(samples, name, **labels).values())


def buckets(samples: dict, name: str, **labels) -> list[tuple[float, float]]:
    """Cumulative (upper bound, count) pairs of a histogram, ascending."""
    summed: dict[float, float] = {}
    for lb, value in series(samples, name + "_bucket", **labels).items():
        bound = float(dict(lb)["le"])
        summed[bound] = summed.get(bound, 0.0) + value
    return sorted(summed.items())


def histogram_quantile(q: float, cumulative: list[tuple[float, float]]) -> float:
    """PromQL's histogram_quantile: linear interpolation inside the bucket holding rank q."""
    count = cumulative[-1][1]
    rank = q * count
    lower_bound, lower_count = 0.0, 0.0
    for bound, seen in cumulative:
        if seen >= rank:
            if bound == float("inf"):
                return lower_bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / max(
                seen - lower_count, 1e-12)
        lower_bound, lower_count = bound, seen
    raise AssertionError("unreachable")


def bucket_of(value: float, cumulative: list[tuple[float, float]]) -> tuple[float, float]:
    lower = 0.0
    for bound, _ in cumulative:
        if value <= bound:
            return lower, bound
        lower = bound
    raise AssertionError(value)


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """`steadyrank compare` of one smelu replica pair on synthetic data: (report, work, config)."""
    root = tmp_path_factory.mktemp("agree")
    data = synth.generate(synth.SynthSpec(users=150, items=200, rows=12_000, seed=3),
                          root / "data")
    config_file = root / "base.toml"
    config_file.write_text(
        f'[data]\ndataset = "synthetic"\ndata_dir = "{data}"\neval_fraction = 0.1\n'
        '[model]\nembedding_dim = 4\ndeep_layers = [8]\n[train]\nepochs = 2\n'
        'batch_size = 256\n')
    assert cli_main(["compare", "--config", str(config_file), "--variants", "smelu",
                     "--pairs", "1", "--users", str(RANK_USERS), "--out", str(root / "rep"),
                     "--work-dir", str(root / "work")]) == 0
    report = json.loads((root / "rep" / "report.json").read_text())
    return (report["variants"]["smelu"], root / "work" / "all" / "smelu",
            load_config(config_file))


def replay(stub, requests, window=64):
    """Sends Rank requests with up to ``window`` in flight; every one must succeed."""
    pending = []
    for request in requests:
        pending.append(stub.Rank.future(request, timeout=60))
        if len(pending) >= window:
            pending.pop(0).result()
    for future in pending:
        future.result()


def test_live_pd_and_swap_match_steadyrank_compare(compared, tmp_path):
    summary, work, config = compared
    base = tmp_path / "models"
    base.mkdir()
    (base / "ml").symlink_to(work / "pair0-a")  # the two exports compare measured
    (base / "ml-b").symlink_to(work / "pair0-b")
    ev = eval_columns(prepare_data(config))
    thread, srv = start(base, shadow_rate=1.0, shadow_queue=100_000)
    try:
        with client.channel(f"127.0.0.1:{srv.port}") as chan:
            stub = ranking_pb2_grpc.RankingServiceStub(chan)
            # 1. The eval split, one request per example: the per-request PD is the example's.
            replay(stub, (client.rank_request("ml", int(u), 1, [int(i)])
                          for u, i in zip(ev.user_id, ev.item_id, strict=True)))
            n = len(ev.labels)
            pairs = "steadyrank_shadow_pairs_total"
            assert wait_for(lambda: total(scrape(srv), pairs, model="ml") == n, timeout=120)
            first = scrape(srv)
            # 2. The full-catalog ranking of compare's ranking users.
            users = np.unique(ev.user_id)[:RANK_USERS]
            replay(stub, (client.rank_request("ml", int(u), 10) for u in users))
            assert wait_for(lambda: total(scrape(srv), pairs, model="ml") == n + len(users),
                            timeout=120)
            second = scrape(srv)
    finally:
        thread.stop(grace=1)

    for kind in ("relative", "absolute"):
        name = f"steadyrank_replica_prediction_difference_{kind}"
        live = total(first, name + "_sum", model="ml") / total(first, name + "_count",
                                                                model="ml")
        assert live == pytest.approx(summary[f"{kind}_pd"]["mean"], rel=1e-3), kind
    # The median from the buckets lies in the bucket of the true median example PD.
    a, b = reader.load(work / "pair0-a"), reader.load(work / "pair0-b")
    per_example = repro.relative_pd_per_example(a.score(ev.inputs),
                                                b.score(ev.inputs))
    cumulative = buckets(first, "steadyrank_replica_prediction_difference_relative",
                         model="ml")
    low, high = bucket_of(float(np.median(per_example)), cumulative)
    assert low <= histogram_quantile(0.5, cumulative) <= high

    name = "steadyrank_replica_topk_swap_rate"
    for k in (1, 5, 10):
        count = total(second, name + "_count", model="ml", k=str(k))
        assert count == len(users)  # one-candidate requests cannot swap: not observed
        live = total(second, name + "_sum", model="ml", k=str(k)) / count
        assert live == pytest.approx(summary[f"top{k}_swap_rate"]["mean"], abs=1e-9), k
    tau = "steadyrank_replica_kendall_tau"
    live_tau = total(second, tau + "_sum", model="ml") / total(second, tau + "_count",
                                                               model="ml")
    assert live_tau == pytest.approx(summary["kendall_tau"]["mean"], rel=1e-3)
    assert 0 < summary["relative_pd"]["mean"] and summary["top10_swap_rate"]["mean"] > 0


def copy_version(source: Path, target: Path):
    """Copies an export version folder into place atomically (hidden temp, then rename)."""
    tmp = target.parent / f".tmp-{target.name}"
    shutil.copytree(source, tmp)
    tmp.rename(target)


def test_churn_on_a_version_switch(compared, tmp_path):
    _, work, config = compared
    old_path = reader.resolve(work / "pair0-a")
    new_path = reader.resolve(work / "pair0-b")
    base = tmp_path / "models"
    copy_version(old_path, base / "ml" / "1")
    thread, srv = start(base, shadow_rate=0.0, churn_rate=1.0, churn_window=600)
    churn = "steadyrank_version_churn_pairs_total"
    try:
        with client.channel(f"127.0.0.1:{srv.port}") as chan:
            stub = ranking_pb2_grpc.RankingServiceStub(chan)
            replay(stub, (client.rank_request("ml", u, 10) for u in (1, 2, 3)))
            time.sleep(0.5)
            assert total(scrape(srv), churn) == 0  # no switch yet: nothing to compare
            copy_version(new_path, base / "ml" / "2")  # a retrain lands
            assert wait_for(lambda: srv.manager.get("ml").version == 2)
            assert total(scrape(srv), "steadyrank_version_churn_window_open", model="ml") == 1
            users = [1, 2, 3, 4, 5, 6]
            replay(stub, (client.rank_request("ml", u, 10) for u in users))
            assert wait_for(lambda: total(scrape(srv), churn, model="ml") == len(users))
            samples = scrape(srv)
    finally:
        thread.stop(grace=1)
    old, new = reader.load(old_path), reader.load(new_path)
    expected = [repro.relative_pd(old.rank_items(u, old.item_ids), new.rank_items(u, new.item_ids))
                for u in users]
    name = "steadyrank_version_churn_prediction_difference_relative"
    labels = {"model": "ml", "version_old": "1", "version_new": "2"}
    assert total(samples, name + "_count", **labels) == len(users)
    assert total(samples, name + "_sum", **labels) / len(users) == pytest.approx(
        np.mean(expected), rel=1e-3)
    assert np.mean(expected) > 0  # different seeds: a retrain changes answers
    assert total(samples, "steadyrank_version_churn_topk_swap_rate_count", k="10",
                 **labels) == len(users)


def test_a_failing_replica_shows_in_model_status_and_recovers(compared, tmp_path):
    _, work, _ = compared
    base = tmp_path / "models"
    (base).mkdir()
    (base / "ml").symlink_to(work / "pair0-a")
    (base / "ml-b").symlink_to(work / "pair0-b")
    thread, srv = start(base, shadow_rate=1.0)
    try:
        replica = srv.manager.replica_b("ml")
        real_call = replica.call

        def broken(signature, inputs):
            raise RuntimeError("replica out of memory")

        replica.call = broken
        with client.channel(f"127.0.0.1:{srv.port}") as chan:
            stub = ranking_pb2_grpc.RankingServiceStub(chan)
            status = model_service_pb2_grpc.ModelServiceStub(chan)
            request = get_model_status_pb2.GetModelStatusRequest()
            request.model_spec.name = "ml-b"
            answer = stub.Rank(client.rank_request("ml", 1, 5), timeout=30)
            assert len(answer.items) == 5  # the primary answers regardless
            dropped = "steadyrank_shadow_dropped_total"
            assert wait_for(lambda: total(scrape(srv), dropped, reason="replica_failed") == 1)
            assert total(scrape(srv), "steadyrank_replica_up", model="ml") == 0
            (entry,) = status.GetModelStatus(request, timeout=10).model_version_status
            assert entry.state == entry.AVAILABLE
            assert entry.status.error_code == grpc.StatusCode.UNAVAILABLE.value[0]
            assert "replica out of memory" in entry.status.error_message
            replica.call = real_call  # it recovers
            stub.Rank(client.rank_request("ml", 1, 5), timeout=30)
            assert wait_for(lambda: total(scrape(srv), "steadyrank_shadow_pairs_total") == 1)
            assert total(scrape(srv), "steadyrank_replica_up", model="ml") == 1
            (entry,) = status.GetModelStatus(request, timeout=10).model_version_status
            assert entry.status.error_code == 0 and not entry.status.error_message
    finally:
        thread.stop(grace=1)


def test_a_slow_replica_leaves_primary_latency_unchanged(compared, tmp_path):
    _, work, _ = compared
    base = tmp_path / "models"
    base.mkdir()
    (base / "ml").symlink_to(work / "pair0-a")
    (base / "ml-b").symlink_to(work / "pair0-b")
    thread, srv = start(base, shadow_rate=1.0, shadow_queue=4)
    try:
        replica = srv.manager.replica_b("ml")
        real_call = replica.call

        def slow(signature, inputs):
            time.sleep(1.0)  # a replica far slower than the primary
            return real_call(signature, inputs)

        with client.channel(f"127.0.0.1:{srv.port}") as chan:
            stub = ranking_pb2_grpc.RankingServiceStub(chan)

            def latencies(pause=0.0):
                out = []
                for user in range(1, 41):
                    started = time.perf_counter()
                    stub.Rank(client.rank_request("ml", user, 10), timeout=30)
                    out.append(time.perf_counter() - started)
                    time.sleep(pause)
                return np.array(out)

            fast = latencies()
            def settled():  # every fast-phase sample compared or dropped
                samples = scrape(srv)
                return (total(samples, "steadyrank_shadow_pairs_total")
                        + total(samples, "steadyrank_shadow_dropped_total")) == 40

            assert wait_for(settled)
            before = total(scrape(srv), "steadyrank_shadow_dropped_total")
            replica.call = slow
            slowed = latencies(pause=0.03)  # 1.2 s of requests: the replica is still busy
        assert np.median(slowed) < np.median(fast) + 0.05  # within noise, not +1 s
        assert slowed.max() < 0.5
        dropped = total(scrape(srv), "steadyrank_shadow_dropped_total") - before
        assert dropped >= 10  # the bounded queue shed the work the slow replica could not take
    finally:
        thread.stop(grace=1)
