"""A steady trickle of requests, so a fresh deployment's dashboard has data to show.

Open loop: requests leave at ``rate`` per second whatever the answers do, as real users'
requests would. Requests are drawn from the model's schema (:mod:`.model_inputs`):
for a ranking model mostly ``Rank`` (random known users over random candidates, or the whole
catalog, with random context values), with a share of ``Predict`` on ``serving_default``; for
a model without ids (a click model), ``Predict`` only. It waits for the server and the
model to be ready, survives server restarts (errors are counted, not fatal), and prints a
progress line every ``report_every`` seconds.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from tensorflow_serving.apis import prediction_service_pb2_grpc

from steadyrank.service import client
from steadyrank.service.client.model_inputs import ModelInputs
from steadyrank.service.stubs import ranking_pb2_grpc


@dataclass
class TrafficStats:
    """Answers by method and status code."""

    codes: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, method: str, code: grpc.StatusCode) -> None:
        """Counts one answer."""
        with self.lock:
            self.codes[(method, code.name)] += 1

    def line(self) -> str:
        """``Rank OK 120, Predict OK 30``: counts so far."""
        with self.lock:
            return ", ".join(f"{m} {c} {n}" for (m, c), n in sorted(self.codes.items()))


def wait_until_ready(server: str, model: str, candidates: int, timeout: float,
                     log: Callable[[str], None]) -> tuple[list[Any], list[Any]]:
    """Request pools once ``model`` answers: Rank requests (``candidates`` random items each,
    0: the whole catalog; none for a model without ids) and Predict requests.
    TimeoutError after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    last = ""
    while True:
        try:
            with client.channel(server) as chan:
                inputs = ModelInputs.read(chan, model)
                predicts = client.predict_pool(chan, model, 10, 100, inputs=inputs)
                ranks = (client.request_pool(chan, model, candidates, 10, size=500)
                         if inputs.ranks else [])
                return ranks, predicts
        except grpc.RpcError as err:
            last = f"{err.code().name}: {err.details()}"
        if time.monotonic() >= end:
            raise TimeoutError(f"{server} did not serve model {model!r} within {timeout:.0f} s "
                               f"(last answer: {last})")
        log(f"waiting for {server} to serve {model!r} ({last})")
        time.sleep(2.0)


def run(server: str, model: str, rate: float, duration: float = 0.0,
        candidates: int = 100, predict_share: float = 0.2, timeout: float = 5.0,
        ready_timeout: float = 600.0, report_every: float = 30.0, seed: int = 0,
        log: Callable[[str], None] = print) -> TrafficStats:
    """Sends requests at ``rate``/s for ``duration`` seconds (0: until interrupted)."""
    if rate <= 0:
        raise ValueError(f"--rate must be > 0 requests/s, got {rate}")
    if not 0 <= predict_share <= 1:
        raise ValueError(f"--predict-share must be in [0, 1], got {predict_share}")
    ranks, predicts = wait_until_ready(server, model, candidates, ready_timeout, log)
    rng = random.Random(seed)
    stats = TrafficStats()
    log(f"sending {rate:g} requests/s to {server} (model {model!r})")
    with client.channel(server) as chan:
        rank_stub = ranking_pb2_grpc.RankingServiceStub(chan)
        predict_stub = prediction_service_pb2_grpc.PredictionServiceStub(chan)
        started = next_report = time.monotonic()
        sent = 0
        in_flight: list[Any] = []
        while duration <= 0 or time.monotonic() - started < duration:
            due = started + sent / rate
            time.sleep(max(0.0, due - time.monotonic()))
            if not ranks or rng.random() < predict_share:
                method, future = "Predict", predict_stub.Predict.future(
                    predicts[rng.randrange(len(predicts))], timeout=timeout)
            else:
                method, future = "Rank", rank_stub.Rank.future(
                    ranks[rng.randrange(len(ranks))], timeout=timeout)
            future.add_done_callback(lambda f, m=method: stats.add(m, f.code()))
            in_flight.append(future)
            sent += 1
            if time.monotonic() >= next_report:
                in_flight = [f for f in in_flight if not f.done()]
                log(f"traffic: {sent} sent; {stats.line() or 'no answers yet'}")
                next_report += report_every
        for future in in_flight:  # let the last answers arrive before closing the channel
            future.exception()
    return stats

