"""The wrapper every RPC handler runs in: status codes, metrics, deadlines, no crashes."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import grpc

from steadyrank.service.serve.status import ServiceError, invalid, unavailable

log = logging.getLogger("steadyrank.rpc")
Handler = TypeVar("Handler", bound=Callable[..., Any])
DRAINING = ("the server is shutting down; send the call again (another server process or "
            "replica will answer it)")


class Drain:
    """Whether a server still admits calls, how many it is answering, and when the last one
    arrived: what a graceful stop waits on (event loop only)."""

    def __init__(self) -> None:
        self.draining = False
        self.in_flight = 0
        self.last_arrival = time.monotonic()

    def quiet_for(self) -> float:
        """Seconds since the last call arrived."""
        return time.monotonic() - self.last_arrival


def rpc(method: str) -> Callable[[Handler], Handler]:
    """Decorates an async servicer method: a :class:`ServiceError` becomes its gRPC status,
    any other exception INTERNAL (logged); each call is counted by code and timed on
    ``self.metrics``. While ``self.drain`` (a :class:`Drain`, if the servicer has one) is
    draining, a call is answered UNAVAILABLE, which stock clients retry, before any work.
    """

    def wrap(fn: Handler) -> Handler:
        @functools.wraps(fn)
        async def handler(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            drain: Drain | None = getattr(self, "drain", None)
            if drain is not None:
                drain.last_arrival = time.monotonic()
                drain.in_flight += 1
            try:
                if drain is not None and drain.draining:
                    raise unavailable(DRAINING)
                return await fn(self, request, context)
            except ServiceError as err:
                code = err.code
                await context.abort(err.code, err.message)
            except asyncio.CancelledError:
                code = grpc.StatusCode.CANCELLED  # the client went away
                raise
            except Exception as err:  # noqa: BLE001  (the server never crashes on a request)
                code = grpc.StatusCode.INTERNAL
                log.exception("%s failed", method)
                await context.abort(code, f"internal error in {method}: "
                                          f"{type(err).__name__}: {err}")
            finally:
                if drain is not None:
                    drain.in_flight -= 1
                self.metrics.requests.labels(method, code.name).inc()
                self.metrics.request_seconds.labels(method).observe(
                    time.perf_counter() - started)

        return handler  # type: ignore[return-value]

    return wrap


def deadline_of(context: grpc.aio.ServicerContext) -> float | None:
    """The client's deadline as a ``time.monotonic()`` value, or None without one."""
    remaining = context.time_remaining()
    if remaining is None or remaining > 1e9:
        return None
    return time.monotonic() + remaining


def requested_version(spec: Any, field: str = "model_spec") -> int | None:
    """The version a ModelSpec asks for (None: the served one); labels are not supported."""
    if "version_label" in spec.DESCRIPTOR.fields_by_name and spec.version_label:
        raise invalid(f"{field}.version_label: version labels are not supported; "
                      f"use {field}.version")
    return spec.version.value if spec.HasField("version") else None
