"""Model calls off the event loop, with server-side batching across concurrent requests.

The server runs on one asyncio event loop; model calls run in worker threads (TensorFlow
releases the GIL while it computes). :class:`Batcher` queues each request's rows (the inputs
of a row-wise signature, ``serving_default`` or ``examples``, by name) and lets ``threads``
workers take as many queued requests as fit in ``max_batch_rows`` rows (after waiting up to
``max_wait`` for more). Requests of the same model version, signature and inputs (names,
dtypes and the shape of one row) are coalesced by concatenating every input tensor, scored
by one model call, and each gets its own rows of every output back. While a call runs, new
requests queue up, so batches grow with load without any wait being configured. A full queue
refuses a request with RESOURCE_EXHAUSTED; a request whose deadline passes while queued is
dropped before the model sees it.

:class:`DirectScorer` has the same interface and makes one model call per request
(``steadyrank serve --no-batching``, the naive baseline of the benchmark).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import grpc
import numpy as np

from steadyrank.model.artifact.layout import SCORE, SERVING_DEFAULT
from steadyrank.service.serve.servable import Servable
from steadyrank.service.serve.status import ServiceError, deadline, exhausted, unavailable
from steadyrank.service.serve.telemetry import ServerMetrics
from steadyrank.service.settings import ServerConfig

log = logging.getLogger("steadyrank.batching")


def batch_key(servable: Servable, signature: str, inputs: dict[str, np.ndarray]
              ) -> tuple[Any, ...]:
    """Requests with equal keys can share a model call: the same model version and
    signature, and inputs of the same names, dtypes and row shapes."""
    return (id(servable), signature,
            tuple((name, a.dtype.str, a.shape[1:]) for name, a in sorted(inputs.items())))


def row_count(inputs: dict[str, np.ndarray]) -> int:
    """The number of rows of a request's inputs; ValueError unless every input has it."""
    sizes = {len(a) for a in inputs.values()}
    if len(sizes) != 1:
        raise ValueError(f"inputs of one request must have the same number of rows, got "
                         f"{ {k: len(a) for k, a in inputs.items()} }")
    return sizes.pop()


@dataclass(eq=False)
class _Task:
    servable: Servable
    signature: str
    inputs: dict[str, np.ndarray]
    rows: int
    key: tuple[Any, ...]
    deadline: float | None  # time.monotonic() value
    future: asyncio.Future


class _Runner:
    """A thread pool for model calls and the metrics of each call."""

    def __init__(self, metrics: ServerMetrics, threads: int,
                 max_queue: int = ServerConfig.max_queue) -> None:
        if threads < 1:
            raise ValueError(f"model threads must be >= 1, got {threads}")
        if max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, got {max_queue}")
        self.metrics = metrics
        self.threads = threads
        self.max_queue = max_queue
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix="model")
        self._pending = 0  # model calls submitted and not finished (event loop only)

    def waiting(self) -> int:
        """Requests waiting for or in a model call."""
        return self._pending

    def _admit(self) -> None:
        if self.waiting() >= self.max_queue:
            self.metrics.queue_rejections.inc()
            raise exhausted(f"model queue full ({self.max_queue} requests waiting; server "
                            "flag --max-queue); retry with backoff")

    async def _in_thread(self, fn: Any, *args: Any) -> Any:
        self._pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)
        finally:
            self._pending -= 1

    async def call(self, servable: Servable, signature: str,
                   inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Runs a signature in a model thread (not batched); RESOURCE_EXHAUSTED when the
        model queue is full, like every other path to the model."""
        self._admit()
        return await self._in_thread(servable.call, signature, inputs)

    def _rows(self, servable: Servable, signature: str, inputs: dict[str, np.ndarray],
              rows: int, requests: int) -> dict[str, np.ndarray]:
        started = time.perf_counter()
        outputs = servable.call(signature, inputs)
        self.metrics.model_call_seconds.labels(servable.name).observe(
            time.perf_counter() - started)
        self.metrics.batch_requests.observe(requests)
        self.metrics.batch_rows.observe(rows)
        wrong = {k: v.shape for k, v in outputs.items() if v.shape[:1] != (rows,)}
        if wrong:
            raise RuntimeError(f"model {servable.name} version {servable.version} signature "
                               f"{signature} returned {wrong} for {rows} rows")
        return outputs

    async def score(self, servable: Servable, inputs: dict[str, np.ndarray],
                    until: float | None = None) -> np.ndarray:
        """``serving_default`` scores of rows given by input name, float32 [rows]."""
        return (await self.rows(servable, SERVING_DEFAULT, inputs, until))[SCORE]

    async def rows(self, servable: Servable, signature: str, inputs: dict[str, np.ndarray],
                   until: float | None = None) -> dict[str, np.ndarray]:
        """Runs a row-wise signature; every output has one row per input row."""
        raise NotImplementedError

    def close(self) -> None:
        """Stops the model threads (after the calls in progress)."""
        self.executor.shutdown(wait=True)


@runtime_checkable
class Scorer(Protocol):
    """What the request handlers score with: :class:`Batcher` or :class:`DirectScorer`."""

    async def score(self, servable: Servable, inputs: dict[str, np.ndarray],
                    until: float | None = None) -> np.ndarray:
        """``serving_default`` scores of rows given by input name (``until``: a monotonic
        deadline)."""
        ...

    async def rows(self, servable: Servable, signature: str, inputs: dict[str, np.ndarray],
                   until: float | None = None) -> dict[str, np.ndarray]:
        """Runs a row-wise signature (one output row per input row), batched if the scorer
        batches."""
        ...

    async def call(self, servable: Servable, signature: str,
                   inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Runs one signature on numpy inputs, unbatched; numpy outputs."""
        ...

    async def start(self) -> None:
        """Starts the scorer's workers (before the first request)."""
        ...

    async def stop(self) -> None:
        """Waits for the work in progress and stops."""
        ...


class DirectScorer(_Runner):
    """One model call per request, in one of ``threads`` model threads (no batching)."""

    async def start(self) -> None:
        """Nothing to start."""

    async def stop(self) -> None:
        """Waits for the calls in progress."""
        self.close()

    async def rows(self, servable: Servable, signature: str, inputs: dict[str, np.ndarray],
                   until: float | None = None) -> dict[str, np.ndarray]:
        """Runs a row-wise signature in one model call of its own."""
        # gRPC cancels the handler when the client's deadline passes; the call in progress
        # finishes in its thread.
        self._admit()
        return await self._in_thread(self._rows, servable, signature, inputs,
                                     row_count(inputs), 1)


class Batcher(_Runner):
    """Merges concurrent requests of a row-wise signature into few model calls."""

    def __init__(self, metrics: ServerMetrics, max_batch_rows: int = ServerConfig.max_batch_rows,
                 max_queue: int = ServerConfig.max_queue, max_wait: float = 0.0,
                 threads: int = ServerConfig.model_threads) -> None:
        if max_batch_rows < 1 or max_queue < 1 or max_wait < 0:
            raise ValueError("max_batch_rows and max_queue must be >= 1, max_wait >= 0")
        super().__init__(metrics, threads, max_queue)
        self.max_batch_rows = max_batch_rows
        self.max_wait = max_wait
        self._queue: deque[_Task] = deque()
        self._ready: asyncio.Event | None = None
        self._workers: list[asyncio.Task] = []
        self._closing = False

    def waiting(self) -> int:
        """Requests in the batch queue plus unbatched calls waiting for a model thread."""
        return len(self._queue) + self._pending

    async def start(self) -> None:
        """Starts the workers on the running event loop."""
        self._ready = asyncio.Event()
        self._workers = [asyncio.create_task(self._work(), name=f"batcher-{i}")
                         for i in range(self.threads)]

    async def stop(self) -> None:
        """Finishes the queued requests, then stops the workers and model threads."""
        self._closing = True
        if self._ready is not None:
            self._ready.set()
        await asyncio.gather(*self._workers)
        self.close()

    async def rows(self, servable: Servable, signature: str, inputs: dict[str, np.ndarray],
                   until: float | None = None) -> dict[str, np.ndarray]:
        """Runs a row-wise signature, batched with other requests of the same key."""
        if self._closing or self._ready is None:
            raise unavailable("the server is shutting down")
        self._admit()
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        inputs = {k: np.asarray(v) for k, v in inputs.items()}
        task = _Task(servable, signature, inputs, row_count(inputs),
                     batch_key(servable, signature, inputs), until, future)
        self._queue.append(task)
        self.metrics.queue_depth.set(len(self._queue))
        self._ready.set()
        # A timer, not asyncio.wait_for: no extra task per request on the hot path.
        timer = (None if until is None else
                 loop.call_later(max(0.0, until - time.monotonic()), self._expire, task))
        try:
            return await future
        except asyncio.CancelledError:  # the client went away (or its deadline passed)
            self._expire(task)
            raise
        finally:
            if timer is not None:
                timer.cancel()

    def _expire(self, task: _Task) -> None:
        """Fails a request that gave up and frees its queue slot (a taken one is skipped)."""
        if task in self._queue:
            self._queue.remove(task)
            self.metrics.queue_depth.set(len(self._queue))
        if not task.future.done():
            task.future.set_exception(deadline("deadline exceeded while waiting for the model"))

    def _take(self) -> list[_Task]:
        batch = [self._queue.popleft()]
        rows = batch[0].rows
        while self._queue and rows + self._queue[0].rows <= self.max_batch_rows:
            task = self._queue.popleft()
            batch.append(task)
            rows += task.rows
        self.metrics.queue_depth.set(len(self._queue))
        return batch

    async def _work(self) -> None:
        assert self._ready is not None
        while True:
            while not self._queue:
                if self._closing:
                    return
                self._ready.clear()
                await self._ready.wait()
            if self.max_wait > 0 and not self._closing:
                await asyncio.sleep(self.max_wait)  # let the batch fill up
                if not self._queue:
                    continue
            now = time.monotonic()
            groups: dict[tuple[Any, ...], list[_Task]] = {}
            for task in self._take():
                if task.future.done():
                    continue  # the caller's deadline passed while it was queued
                if task.deadline is not None and task.deadline <= now:
                    task.future.set_exception(deadline("deadline exceeded in the batch queue"))
                    continue
                groups.setdefault(task.key, []).append(task)
            for tasks in groups.values():
                await self._run(tasks)

    async def _run(self, tasks: list[_Task]) -> None:
        servable, signature = tasks[0].servable, tasks[0].signature
        inputs = (tasks[0].inputs if len(tasks) == 1 else
                  {k: np.concatenate([t.inputs[k] for t in tasks]) for k in tasks[0].inputs})
        rows = sum(t.rows for t in tasks)
        try:
            outputs = await self._in_thread(self._rows, servable, signature, inputs, rows,
                                            len(tasks))
        except ServiceError as err:
            if err.code == grpc.StatusCode.INVALID_ARGUMENT and len(tasks) > 1:
                # One request's rows the model refuses (a malformed tf.Example) must not fail
                # the others it was batched with: each runs again on its own.
                for task in tasks:
                    await self._run([task])
                return
            for task in tasks:
                if not task.future.done():
                    task.future.set_exception(err)
            return
        except Exception as err:  # noqa: BLE001  (every waiting request gets the error)
            log.exception("model call failed (%s version %d, %s, %d rows)", servable.name,
                          servable.version, signature, rows)
            error = err if isinstance(err, ServiceError) else RuntimeError(
                f"model call failed: {type(err).__name__}: {err}")
            for task in tasks:
                if not task.future.done():
                    task.future.set_exception(error)
            return
        offset = 0
        for task in tasks:
            if not task.future.done():
                task.future.set_result({k: v[offset:offset + task.rows]
                                        for k, v in outputs.items()})
            offset += task.rows
