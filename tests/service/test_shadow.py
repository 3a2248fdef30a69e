"""Shadow scoring: per-pair metrics, sampling, bounded queue, replica loss and recovery."""

import time

import numpy as np
import pytest

from steadyrank.service.pair_metrics import request_metrics
from steadyrank.service.serve.shadow import ShadowScorer
from steadyrank.service.serve.telemetry import ServerMetrics
from tests.conftest import wait_for


class Replica:
    def __init__(self, name="m-b", version=1, shift=0.0, delay=0.0, fail=False):
        self.name, self.version, self.shift, self.delay, self.fail = (name, version, shift,
                                                                      delay, fail)
        self.calls = 0

    def call(self, signature, inputs):
        self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        if self.fail:
            raise RuntimeError("replica broke")
        return {"score": inputs["item"].astype(np.float32) + self.shift}


def rows(items):
    """One user's candidate rows."""
    return {"user": np.ones_like(items), "item": items}


class Primary:
    name, version = "m", 3
    signature_defs: dict = {}


class RarityPrimary(Primary):
    """A primary whose export has the rarity signature: item i's rarest value's training
    count is 10 * (i - 1) (item 1 never reached by training)."""

    class Signature:
        inputs = {"user": None, "item": None}

    signature_defs = {"serving_default": Signature(), "rarity": Signature()}

    def call(self, signature, inputs):
        assert signature == "rarity" and set(inputs) == {"user", "item"}
        return {"rarest_count": 10 * (inputs["item"] - 1)}


class Models:
    """A model source: the replica and the replaced version to compare with, and health."""

    def __init__(self, replica=None, previous=None):
        self.replica, self.old = replica, previous
        self.health = {}

    def replica_b(self, name):
        return self.replica

    def previous(self, name):
        return self.old

    def report_health(self, servable, error):
        self.health[(servable.name, servable.version)] = error


def value(metric, *labels):
    return metric.labels(*labels)._value.get()


def hist(metric, *labels):
    """(count, sum) of a labelled histogram."""
    child = metric.labels(*labels)
    return sum(b.get() for b in child._buckets), child._sum.get()



def test_request_metrics_by_hand():
    a = np.array([1.0, 2.0, 3.0, 4.0])
    b = np.array([1.0, 2.0, 4.0, 3.0])
    got = request_metrics(a, b)
    assert got["relative_pd"] == pytest.approx((1 / 3.5 + 1 / 3.5) / 4)
    assert got["absolute_pd"] == pytest.approx(0.5)
    assert got["top1_swap_rate"] == 1.0  # item 3 vs item 2 on top
    assert "top5_swap_rate" not in got and "top10_swap_rate" not in got  # k > candidates
    assert got["kendall_tau"] == pytest.approx((5 - 1) / 6)  # one discordant pair of six


def test_identical_replicas_give_zero_pd_and_swap():
    scores = np.random.default_rng(0).normal(3, 1, 50)
    got = request_metrics(scores, scores.copy())
    assert got["relative_pd"] == got["absolute_pd"] == 0.0
    assert got["top1_swap_rate"] == got["top5_swap_rate"] == got["top10_swap_rate"] == 0.0
    assert got["kendall_tau"] == pytest.approx(1.0)


def run_shadow(replica, rate=1.0, max_queue=16, offers=5, previous=None, churn_rate=0.0,
               primary=Primary):
    metrics = ServerMetrics()
    shadow = ShadowScorer(Models(replica, previous), metrics, rate=rate, max_queue=max_queue,
                          seed=0, churn_rate=churn_rate)
    shadow.start()
    items = np.arange(1, 21, dtype=np.int64)
    primary_scores = items.astype(np.float32)
    queued = [shadow.offer(primary(), "serving_default", rows(items), primary_scores,
                           ranked=True) for _ in range(offers)]
    return shadow, metrics, queued


def test_rows_pd_is_recorded_by_their_rarest_values_training_count():
    shadow, metrics, _ = run_shadow(Replica(shift=0.5), offers=3, primary=RarityPrimary)
    assert wait_for(lambda: value(metrics.shadow_pairs, "m") == 3)
    shadow.stop()
    items = np.arange(1, 21)
    per_row = 0.5 / ((items + items + 0.5) / 2)
    counts = 10 * (items - 1)  # 0 (oov), 10-90 (5-99), 100-190 (100+)
    for name, inside in (("oov", counts == 0), ("5-99", (counts >= 5) & (counts < 100)),
                         ("100+", counts >= 100)):
        count, total = hist(metrics.replica_by_rarity, "m", name)
        assert count == 3 * inside.sum() and total == pytest.approx(3 * per_row[inside].sum())
    assert hist(metrics.replica_by_rarity, "m", "1") == (0, 0.0)
    # Models without the signature record none.
    shadow, metrics, _ = run_shadow(Replica(shift=0.5), offers=1)
    assert wait_for(lambda: value(metrics.shadow_pairs, "m") == 1)
    shadow.stop()
    assert hist(metrics.replica_by_rarity, "m", "oov") == (0, 0.0)


def test_shadowed_requests_are_compared_with_the_replica():
    replica = Replica(shift=0.5)
    shadow, metrics, queued = run_shadow(replica, offers=5)
    assert all(queued)
    assert wait_for(lambda: value(metrics.shadow_pairs, "m") == 5)
    shadow.stop()
    count, total = hist(metrics.replica.pd_absolute, "m", "3", "1")
    assert count == 5 and total == pytest.approx(5 * 0.5)
    items = np.arange(1, 21)
    want = np.mean(0.5 / ((items + items + 0.5) / 2))
    count, total = hist(metrics.replica.pd_relative, "m", "3", "1")
    assert total / count == pytest.approx(want, rel=1e-5)
    assert hist(metrics.replica.topk_swap, "m", "3", "1", "10") == (5, 0.0)
    assert value(metrics.replica_up, "m") == 1


def test_a_slow_replica_never_blocks_offer_and_overflow_is_counted():
    replica = Replica(delay=0.3)
    started = time.perf_counter()
    shadow, metrics, queued = run_shadow(replica, max_queue=2, offers=20)
    elapsed = time.perf_counter() - started
    assert elapsed < 0.25  # twenty offers while the replica takes 0.3 s per call
    dropped = value(metrics.shadow_dropped, "m", "queue_full")
    assert dropped == queued.count(False) and dropped >= 15
    assert wait_for(lambda: value(metrics.shadow_pairs, "m") == queued.count(True))
    shadow.stop()


def test_replica_loss_and_recovery():
    models = Models()
    metrics = ServerMetrics()
    shadow = ShadowScorer(models, metrics, rate=1.0, seed=0)
    shadow.start()
    items = np.arange(1, 6, dtype=np.int64)

    def offer():
        shadow.offer(Primary(), "serving_default", rows(items), items.astype(np.float32),
                     ranked=True)

    offer()
    assert wait_for(lambda: value(metrics.shadow_dropped, "m", "replica_missing") == 1)
    assert value(metrics.replica_up, "m") == 0
    models.replica = Replica(fail=True)
    offer()
    assert wait_for(lambda: value(metrics.shadow_dropped, "m", "replica_failed") == 1)
    assert value(metrics.replica_up, "m") == 0
    assert "replica broke" in models.health[("m-b", 1)]
    models.replica = Replica()
    offer()
    assert wait_for(lambda: value(metrics.shadow_pairs, "m") == 1)
    assert value(metrics.replica_up, "m") == 1
    assert models.health[("m-b", 1)] == ""
    shadow.stop()


def test_churn_compares_the_replaced_version_with_the_new_one():
    old = Replica(name="m", version=2, shift=-1.0)  # the version that "m" 3 replaced
    shadow, metrics, queued = run_shadow(None, rate=0.0, previous=old, churn_rate=1.0,
                                         offers=4)
    assert queued == [1, 1, 1, 1]
    assert wait_for(lambda: value(metrics.churn_pairs, "m") == 4)
    shadow.stop()
    assert hist(metrics.churn.pd_absolute, "m", "2", "3") == (4, pytest.approx(4.0))
    assert hist(metrics.churn.topk_swap, "m", "2", "3", "5") == (4, 0.0)  # same order
    assert value(metrics.shadow_pairs, "m") == 0  # no replica comparison at rate 0


def test_churn_and_replica_comparisons_are_separate():
    old = Replica(name="m", version=2)
    shadow, metrics, queued = run_shadow(Replica(shift=0.25), rate=1.0, previous=old,
                                         churn_rate=1.0, offers=3)
    assert queued == [2, 2, 2]
    assert wait_for(lambda: value(metrics.churn_pairs, "m") == 3
                      and value(metrics.shadow_pairs, "m") == 3)
    shadow.stop()
    assert hist(metrics.churn.pd_absolute, "m", "2", "3") == (3, 0.0)
    assert hist(metrics.replica.pd_absolute, "m", "3", "1") == (3, pytest.approx(0.75))


def test_a_failing_replaced_version_drops_churn_samples():
    shadow, metrics, _ = run_shadow(None, rate=0.0, previous=Replica(version=2, fail=True),
                                    churn_rate=1.0, offers=2)
    assert wait_for(lambda: value(metrics.churn_dropped, "m", "version_failed") == 2)
    shadow.stop()
    assert value(metrics.churn_pairs, "m") == 0


def test_no_churn_sampling_outside_a_churn_window():
    shadow, metrics, queued = run_shadow(None, rate=0.0, previous=None, churn_rate=1.0)
    shadow.stop()
    assert queued == [0] * 5


def test_sampling_rate():
    shadow, metrics, queued = run_shadow(Replica(), rate=0.1, max_queue=10_000, offers=3000)
    shadow.stop()
    assert 200 <= sum(queued) <= 400
    with pytest.raises(ValueError, match="churn rate"):
        ShadowScorer(Models(), metrics, churn_rate=1.5)
    off, _, queued = run_shadow(Replica(), rate=0.0, offers=50)
    assert not any(queued)
    off.stop()


def test_bad_settings():
    with pytest.raises(ValueError, match="shadow rate"):
        ShadowScorer(lambda m: None, ServerMetrics(), rate=1.5)
    with pytest.raises(ValueError, match="shadow queue"):
        ShadowScorer(lambda m: None, ServerMetrics(), max_queue=0)
