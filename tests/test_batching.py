"""The batcher: merging, splitting, bounded queue, deadlines; the naive scorer."""

import asyncio
import threading
import time

import grpc
import numpy as np
import pytest

from steadyrank.service.batching import Batcher, DirectScorer
from steadyrank.service.status import ServiceError
from steadyrank.service.telemetry import ServerMetrics


class FakeServable:
    """Scores pair (u, i) as u * 1000 + i, and records each call's size."""

    def __init__(self, name="m", version=1, delay=0.0, fail=False):
        self.name, self.version, self.delay, self.fail = name, version, delay, fail
        self.calls = []
        self.lock = threading.Lock()

    def score(self, users, items):
        if self.delay:
            time.sleep(self.delay)
        if self.fail:
            raise ValueError("boom")
        with self.lock:
            self.calls.append(len(items))
        return (users * 1000 + items).astype(np.float32)


def run(coro):
    return asyncio.run(coro)


async def _score_many(scorer, servable, n, until=None):
    await scorer.start()
    try:
        tasks = [scorer.score(servable, np.full(i + 1, i, np.int64),
                              np.arange(i + 1, dtype=np.int64), until) for i in range(n)]
        return await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await scorer.stop()


def test_concurrent_requests_share_model_calls_and_get_their_own_scores():
    servable = FakeServable(delay=0.02)
    results = run(_score_many(Batcher(ServerMetrics()), servable, 20))
    for i, scores in enumerate(results):
        np.testing.assert_array_equal(scores, i * 1000 + np.arange(i + 1))
    assert sum(servable.calls) == sum(range(1, 21))
    assert len(servable.calls) < 20  # merged: the first call runs alone, the rest queue up


def test_batches_respect_max_rows():
    servable = FakeServable(delay=0.01)
    run(_score_many(Batcher(ServerMetrics(), max_batch_rows=10), servable, 12))
    # A request bigger than max_batch_rows runs alone; no merged call exceeds the limit.
    assert all(c <= 10 for c in servable.calls if c not in (11, 12))
    assert 11 in servable.calls and 12 in servable.calls
    assert sum(servable.calls) == sum(range(1, 13))


def test_versions_are_never_mixed_in_one_call():
    a, b = FakeServable(version=1, delay=0.01), FakeServable(version=2, delay=0.01)

    async def go():
        batcher = Batcher(ServerMetrics())
        await batcher.start()
        out = await asyncio.gather(*[
            batcher.score(a if i % 2 else b, np.array([i]), np.array([1])) for i in range(10)])
        await batcher.stop()
        return out

    out = run(go())
    assert [float(s[0]) for s in out] == [i * 1000 + 1 for i in range(10)]
    assert sum(a.calls) == 5 and sum(b.calls) == 5


def test_full_queue_is_resource_exhausted():
    servable = FakeServable()
    metrics = ServerMetrics()
    results = run(_score_many(Batcher(metrics, max_queue=2, max_wait=0.2), servable, 5))
    codes = [r.code if isinstance(r, ServiceError) else "ok" for r in results]
    assert codes.count("ok") == 2
    assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == 3
    assert metrics.queue_rejections._value.get() == 3


def test_expired_requests_never_reach_the_model():
    servable = FakeServable()
    until = time.monotonic() + 0.05
    results = run(_score_many(Batcher(ServerMetrics(), max_wait=0.2), servable, 3, until))
    assert all(isinstance(r, ServiceError) and r.code == grpc.StatusCode.DEADLINE_EXCEEDED
               for r in results)
    assert servable.calls == []


def test_a_failing_model_fails_its_requests_not_the_batcher():
    bad, good = FakeServable(fail=True), FakeServable()

    async def go():
        batcher = Batcher(ServerMetrics())
        await batcher.start()
        first = await asyncio.gather(batcher.score(bad, np.array([1]), np.array([2])),
                                     return_exceptions=True)
        second = await batcher.score(good, np.array([1]), np.array([2]))
        await batcher.stop()
        return first[0], second

    error, scores = run(go())
    assert isinstance(error, RuntimeError) and "boom" in str(error)
    np.testing.assert_array_equal(scores, [1002])


def test_stop_drains_queued_requests_then_refuses():
    servable = FakeServable(delay=0.02)

    async def go():
        batcher = Batcher(ServerMetrics())
        await batcher.start()
        pending = [asyncio.ensure_future(batcher.score(servable, np.array([i]), np.array([0])))
                   for i in range(5)]
        await asyncio.sleep(0)
        await batcher.stop()
        done = await asyncio.gather(*pending)
        with pytest.raises(ServiceError) as err:
            await batcher.score(servable, np.array([1]), np.array([1]))
        return done, err.value.code

    done, code = run(go())
    assert [float(d[0]) for d in done] == [i * 1000 for i in range(5)]
    assert code == grpc.StatusCode.UNAVAILABLE


def test_direct_scorer_makes_one_call_per_request():
    servable = FakeServable()
    results = run(_score_many(DirectScorer(ServerMetrics(), threads=2), servable, 6))
    assert sorted(servable.calls) == list(range(1, 7))
    for i, scores in enumerate(results):
        np.testing.assert_array_equal(scores, i * 1000 + np.arange(i + 1))


def test_bad_settings_are_refused():
    with pytest.raises(ValueError):
        Batcher(ServerMetrics(), max_batch_rows=0)
    with pytest.raises(ValueError):
        Batcher(ServerMetrics(), max_wait=-1)
    with pytest.raises(ValueError):
        DirectScorer(ServerMetrics(), threads=0)


def test_a_request_that_gives_up_frees_its_queue_slot():
    servable = FakeServable()

    async def go():
        batcher = Batcher(ServerMetrics(), max_queue=1, max_wait=0.3)
        await batcher.start()
        with pytest.raises(ServiceError) as err:
            await batcher.score(servable, np.array([1]), np.array([1]), time.monotonic() + 0.05)
        scores = await batcher.score(servable, np.array([2]), np.array([2]))
        await batcher.stop()
        return err.value.code, scores

    code, scores = run(go())
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    np.testing.assert_array_equal(scores, [2002])
    assert servable.calls == [1]


def test_both_scorers_offer_what_the_handlers_call():
    from steadyrank.service.batching import Batcher, DirectScorer, Scorer
    from steadyrank.service.telemetry import ServerMetrics

    wanted = {n for n in dir(Scorer) if not n.startswith("_")}
    assert {"score", "call", "start", "stop"} <= wanted
    for scorer in (Batcher(ServerMetrics()), DirectScorer(ServerMetrics(), 1)):
        assert isinstance(scorer, Scorer), type(scorer).__name__
        scorer.close()
