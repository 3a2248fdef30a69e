"""Services registered on raw bytes: admission by size before any work, parsing off the loop.

gRPC's generated registration parses every request on the event loop before a handler runs,
answers UNKNOWN to a body that does not decode (with an ERROR traceback in the log), and
never counts it. Here each method receives the raw bytes instead, and:

1. **Admission**: a body over ``max_message_bytes`` (gRPC's own receive limit catches it
   first) or one that would take the bytes of requests in flight over ``max_inflight_bytes``
   is refused with RESOURCE_EXHAUSTED naming the limit and its flag, before it is parsed; and
   a body larger than any valid request of its method can be (a Rank over ``--max-candidates``
   candidates, say) is INVALID_ARGUMENT, also unparsed: decoding a large message holds the
   interpreter lock for tens of milliseconds even in a worker thread.
2. **Parsing**: small bodies are parsed inline; larger ones in a worker thread, so one large
   valid request cannot hold the event loop (and every other client) while it decodes.
3. **Codes**: an undecodable body is INVALID_ARGUMENT, counted in
   ``steadyrank_requests_total`` and logged at most once per ``LOG_EVERY`` seconds, without a
   traceback.

Handlers that are not our own (the health and reflection servicers) are wrapped the same way,
so no method answers UNKNOWN to a caller's mistake.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.message import DecodeError

from steadyrank.service.serve.status import ServiceError, exhausted, invalid
from steadyrank.service.serve.telemetry import ServerMetrics

log = logging.getLogger("steadyrank.wire")
INLINE_PARSE_BYTES = 64 << 10  # bodies above this are parsed in a worker thread
LOG_EVERY = 60.0  # seconds between log lines about undecodable bodies


class Admission:
    """Bytes of request bodies being handled, bounded by ``max_inflight_bytes``, and the
    largest body each method can validly have (``body_limits``: method -> (bytes, why))."""

    def __init__(self, max_message_bytes: int, max_inflight_bytes: int,
                 metrics: ServerMetrics,
                 body_limits: dict[str, tuple[int, str]] | None = None) -> None:
        self.max_message_bytes = max_message_bytes
        self.max_inflight_bytes = max_inflight_bytes
        self.metrics = metrics
        self.body_limits = body_limits or {}
        self.inflight = 0  # touched only on the event loop

    def admit(self, size: int, method: str = "") -> None:
        """Counts ``size`` bytes in; RESOURCE_EXHAUSTED or INVALID_ARGUMENT (nothing counted)
        over a limit."""
        limit = self.body_limits.get(method)
        if limit is not None and size > limit[0]:
            raise invalid(f"request body of {size} bytes is larger than any valid {method} "
                          f"request ({limit[1]})")
        if size > self.max_message_bytes:
            raise exhausted(f"request body of {size} bytes is over the {self.max_message_bytes}"
                            "-byte limit (server flag --max-message-bytes)")
        if self.inflight + size > self.max_inflight_bytes:
            raise exhausted(f"request body of {size} bytes would take the requests in flight "
                            f"over {self.max_inflight_bytes} bytes (server flag "
                            "--max-inflight-bytes); retry later")
        self.inflight += size
        self.metrics.inflight_bytes.set(self.inflight)

    def release(self, size: int) -> None:
        """Counts ``size`` bytes out."""
        self.inflight -= size
        self.metrics.inflight_bytes.set(self.inflight)


class Wire:
    """Registers services on a server with raw-bytes handlers (see the module docstring)."""

    def __init__(self, admission: Admission, metrics: ServerMetrics,
                 parse_threads: int = 2) -> None:
        self.admission = admission
        self.metrics = metrics
        self._parser = ThreadPoolExecutor(parse_threads, thread_name_prefix="parse")
        self._last_log = 0.0
        self._unlogged = 0

    def close(self) -> None:
        """Stops the parse threads."""
        self._parser.shutdown(wait=False)

    # ---- parsing ----

    def _note_undecodable(self, method: str, size: int, err: Exception) -> None:
        now = time.monotonic()
        if now - self._last_log >= LOG_EVERY:
            extra = f" (and {self._unlogged} more since the last note)" if self._unlogged else ""
            log.warning("%s: undecodable request body of %d bytes: %s%s", method, size, err,
                        extra)
            self._last_log, self._unlogged = now, 0
        else:
            self._unlogged += 1

    async def parse(self, message_class: type, data: bytes, method: str) -> Any:
        """The request message of ``data``; INVALID_ARGUMENT if it does not decode."""
        try:
            if len(data) <= INLINE_PARSE_BYTES:
                return message_class.FromString(data)
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._parser, message_class.FromString, data)
        except (DecodeError, ValueError, RuntimeError) as err:
            self._note_undecodable(method, len(data), err)
            raise invalid(f"request body: not a valid {message_class.DESCRIPTOR.full_name} "
                          "message") from None

    # ---- handlers ----

    async def _refuse(self, method: str, err: ServiceError,
                      context: grpc.aio.ServicerContext) -> None:
        self.metrics.requests.labels(method, err.code.name).inc()
        await context.abort(err.code, err.message)

    def unary_unary(self, method: str, message_class: type,
                    behavior: Callable[[Any, Any], Any]) -> Callable[..., Any]:
        """A handler: admit, parse, then ``behavior(request, context)``."""

        async def handler(data: bytes, context: grpc.aio.ServicerContext) -> Any:
            try:
                self.admission.admit(len(data), method)
            except ServiceError as err:
                await self._refuse(method, err, context)
            try:
                try:
                    request = await self.parse(message_class, data, method)
                except ServiceError as err:
                    await self._refuse(method, err, context)
                return await behavior(request, context)
            finally:
                self.admission.release(len(data))

        return handler

    async def _write_all(self, result: Any, context: grpc.aio.ServicerContext) -> None:
        # A servicer either yields its responses or writes them itself and returns.
        if hasattr(result, "__aiter__"):
            async for response in result:
                await context.write(response)
        else:
            await result

    def unary_stream(self, method: str, message_class: type,
                     behavior: Callable[[Any, Any], Any]) -> Callable[..., Any]:
        """A streaming-response handler (health Watch)."""

        async def handler(data: bytes, context: grpc.aio.ServicerContext) -> None:
            try:
                request = await self.parse(message_class, data, method)
            except ServiceError as err:
                await self._refuse(method, err, context)
            await self._write_all(behavior(request, context), context)

        return handler

    def stream_stream(self, method: str, message_class: type,
                      behavior: Callable[[Any, Any], Any]) -> Callable[..., Any]:
        """A bidirectional handler (reflection): each incoming message is parsed in turn."""

        async def handler(requests: AsyncIterator[bytes],
                          context: grpc.aio.ServicerContext) -> None:
            async def parsed() -> AsyncIterator[Any]:
                async for data in requests:
                    try:
                        yield await self.parse(message_class, data, method)
                    except ServiceError as err:
                        await self._refuse(method, err, context)

            await self._write_all(behavior(parsed(), context), context)

        return handler

    def add_service(self, server: grpc.aio.Server, service: Any, servicer: Any,
                    label: Callable[[str], str] = lambda name: name) -> None:
        """Registers every method of the service descriptor ``service`` on ``servicer``."""
        handlers = {}
        for method in service.methods:
            request_class = message_factory.GetMessageClass(method.input_type)
            response_class = message_factory.GetMessageClass(method.output_type)
            behavior = getattr(servicer, method.name)
            name = label(method.name)
            serialize = response_class.SerializeToString
            if method.client_streaming and method.server_streaming:
                handlers[method.name] = grpc.stream_stream_rpc_method_handler(
                    self.stream_stream(name, request_class, behavior),
                    response_serializer=serialize)
            elif method.server_streaming:
                handlers[method.name] = grpc.unary_stream_rpc_method_handler(
                    self.unary_stream(name, request_class, behavior),
                    response_serializer=serialize)
            elif not method.client_streaming:
                handlers[method.name] = grpc.unary_unary_rpc_method_handler(
                    self.unary_unary(name, request_class, behavior),
                    response_serializer=serialize)
            else:  # pragma: no cover  (no client-streaming-only method in our services)
                raise ValueError(f"{service.full_name}.{method.name}: client streaming")
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(service.full_name, handlers),))
