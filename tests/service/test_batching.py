"""The batcher: merging, splitting, bounded queue, deadlines; the naive scorer."""

import asyncio
import threading
import time

import grpc
import numpy as np
import pytest

from steadyrank.service.serve.batching import Batcher, DirectScorer
from steadyrank.service.serve.status import ServiceError
from steadyrank.service.serve.telemetry import ServerMetrics


class FakeServable:
    """Scores row (u, i) as u * 1000 + i, and records each call's size."""

    def __init__(self, name="m", version=1, delay=0.0, fail=False):
        self.name, self.version, self.delay, self.fail = name, version, delay, fail
        self.calls = []
        self.lock = threading.Lock()

    def call(self, signature, inputs):
        assert signature == "serving_default"
        users, items = inputs["u"], inputs["i"]
        if self.delay:
            time.sleep(self.delay)
        if self.fail:
            raise ValueError("boom")
        with self.lock:
            self.calls.append(len(items))
        return {"score": (users * 1000 + items).astype(np.float32)}


def rows(users, items):
    """A request's rows: inputs ``u`` and ``i``."""
    return {"u": np.asarray(users, np.int64), "i": np.asarray(items, np.int64)}


def run(coro):
    return asyncio.run(coro)


async def _score_many(scorer, servable, n, until=None):
    await scorer.start()
    try:
        tasks = [scorer.score(servable, rows(np.full(i + 1, i), np.arange(i + 1)), until)
                 for i in range(n)]
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
            batcher.score(a if i % 2 else b, rows([i], [1])) for i in range(10)])
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
        first = await asyncio.gather(batcher.score(bad, rows([1], [2])),
                                     return_exceptions=True)
        second = await batcher.score(good, rows([1], [2]))
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
        pending = [asyncio.ensure_future(batcher.score(servable, rows([i], [0])))
                   for i in range(5)]
        await asyncio.sleep(0)
        await batcher.stop()
        done = await asyncio.gather(*pending)
        with pytest.raises(ServiceError) as err:
            await batcher.score(servable, rows([1], [1]))
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
            await batcher.score(servable, rows([1], [1]), time.monotonic() + 0.05)
        scores = await batcher.score(servable, rows([2], [2]))
        await batcher.stop()
        return err.value.code, scores

    code, scores = run(go())
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    np.testing.assert_array_equal(scores, [2002])
    assert servable.calls == [1]


def test_both_scorers_offer_what_the_handlers_call():
    from steadyrank.service.serve.batching import Batcher, DirectScorer, Scorer
    from steadyrank.service.serve.telemetry import ServerMetrics

    wanted = {n for n in dir(Scorer) if not n.startswith("_")}
    assert {"score", "rows", "call", "start", "stop"} <= wanted
    for scorer in (Batcher(ServerMetrics()), DirectScorer(ServerMetrics(), 1)):
        assert isinstance(scorer, Scorer), type(scorer).__name__
        scorer.close()


def test_requests_of_other_inputs_or_signatures_never_share_a_call():
    class Echo:
        name, version = "m", 1

        def __init__(self):
            self.calls = []

        def call(self, signature, inputs):
            self.calls.append((signature, sorted(inputs), len(next(iter(inputs.values())))))
            first = next(iter(inputs.values()))
            return {"score": np.arange(len(first), dtype=np.float32),
                    "echo": np.asarray(first).reshape(len(first), -1)[:, 0]}

    servable = Echo()

    async def go():
        batcher = Batcher(ServerMetrics(), max_wait=0.05)
        await batcher.start()
        out = await asyncio.gather(
            batcher.rows(servable, "serving_default", {"a": np.array([1, 2]),
                                                       "b": np.array([[1.0], [2.0]])}),
            batcher.rows(servable, "serving_default", {"a": np.array([3]),
                                                       "b": np.array([[3.0]])}),
            batcher.rows(servable, "serving_default", {"a": np.array([4])}),
            batcher.rows(servable, "examples", {"examples": np.array([b"x", b"y"], object)}),
            batcher.rows(servable, "serving_default", {"a": np.array([5]),
                                                       "b": np.array([[5.0, 6.0]])}))
        await batcher.stop()
        return out

    out = run(go())
    # The first two share a call (same names, dtypes, row shapes); each gets its own rows.
    np.testing.assert_array_equal(out[0]["echo"], [1, 2])
    np.testing.assert_array_equal(out[1]["echo"], [3])
    np.testing.assert_array_equal(out[1]["score"], [2])  # its row of the shared call
    assert sorted(servable.calls) == sorted([
        ("serving_default", ["a", "b"], 3), ("serving_default", ["a"], 1),
        ("examples", ["examples"], 2), ("serving_default", ["a", "b"], 1)])


def test_a_request_the_model_refuses_does_not_fail_the_ones_batched_with_it():
    from steadyrank.service.serve.status import invalid

    class Picky(FakeServable):
        def call(self, signature, inputs):
            if (inputs["u"] < 0).any():
                with self.lock:
                    self.calls.append(-len(inputs["u"]))
                raise invalid("examples: Feature: u is required")
            return super().call(signature, inputs)

    servable = Picky(delay=0.02)

    async def go():
        batcher = Batcher(ServerMetrics(), max_wait=0.05)
        await batcher.start()
        out = await asyncio.gather(*[batcher.score(servable, rows([u], [1]))
                                     for u in (1, -1, 2, 3)], return_exceptions=True)
        await batcher.stop()
        return out

    out = run(go())
    assert isinstance(out[1], ServiceError) and out[1].code == grpc.StatusCode.INVALID_ARGUMENT
    assert [float(out[i][0]) for i in (0, 2, 3)] == [1001, 2001, 3001]
    assert servable.calls[0] == -4  # the batched call, refused, then one call each
    assert sorted(servable.calls[1:]) == [-1, 1, 1, 1]
