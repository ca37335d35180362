"""Relaying one generation call of the core to the HTTP request that asked for it.

The core admits a request (key, limits, validation, capabilities, context length)
before its first event, so the gateway reads that event before it sends a head: a
refusal is an HTTP error with its own status and the OpenAI envelope, `stream: true`
or not. Then the whole answer is read and sent as one JSON body, or the events are
relayed as server-sent events (queue positions as comments) that a failure ends
with an error event. Chat and text completions share this; their renderers differ.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
from starlette.requests import Request
from starlette.responses import Response

from gpucloud.v1 import chat_pb2, scheduler_pb2
from gpucloud_gateway.choices import Answer, read_all
from gpucloud_gateway.errors import ApiError, from_grpc, sse_error_event
from gpucloud_gateway.metrics import GatewayMetrics
from gpucloud_gateway.middleware import RequestInfo, request_info
from gpucloud_gateway.sse import KEEPALIVE, DisconnectWatch, EventStreamResponse, batches

_FORWARDED_PREFIXES = ("x-ratelimit-",)
Handler = Callable[[Request, RequestInfo, float], Awaitable[Response]]


def bearer(request: Request) -> str:
    """The raw Authorization header, required; the core judges the credential."""
    value = request.headers.get("authorization")
    if not value or not value.lower().startswith("bearer ") or not value[7:].strip():
        raise ApiError(
            401,
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            code="missing_api_key",
        )
    return value


def forwarded_headers(
    metadata: Iterable[tuple[str, Any]] | None, info: RequestInfo
) -> dict[str, str]:
    """x-ratelimit-* from the core's initial metadata; notes the key id for the log."""
    headers: dict[str, str] = {}
    for key, value in metadata or ():
        if key.startswith(_FORWARDED_PREFIXES):
            headers[key] = value if isinstance(value, str) else value.decode("latin-1")
        elif key == "x-key-id":
            info.key_id = value if isinstance(value, str) else value.decode("latin-1")
    return headers


async def with_admission_headers(error: ApiError, call: Any, info: RequestInfo) -> ApiError:
    """`error` plus the x-ratelimit-* headers from the core's initial metadata. A core
    refusal repeats them in its trailers, so `error` has them already: grpc.aio may report
    the initial metadata of a call that fails at once as empty."""
    admitted = forwarded_headers(await call.initial_metadata(), info)
    error.headers = {**admitted, **error.headers}
    return error


@contextlib.asynccontextmanager
async def answering(
    call: Any, request: Request, info: RequestInfo
) -> AsyncIterator[DisconnectWatch]:
    """The block in which a handler waits on `call` before its answer has a head: a
    client that leaves cancels the call (and reads as 499), a failed call becomes its
    HTTP error. Stop the yielded watch before handing the call to a streaming response."""
    watch = DisconnectWatch(request.receive, call)
    try:
        yield watch
    except asyncio.CancelledError:
        call.cancel()
        if watch.disconnected:
            raise ApiError(499, "The client closed the request.", code="client_closed") from None
        raise
    except grpc.aio.AioRpcError as err:
        info.error = err.code().name
        error = from_grpc(err, info.request_id)
        raise await with_admission_headers(error, call, info) from None
    except ApiError as err:
        call.cancel()
        raise await with_admission_headers(err, call, info) from None
    except BaseException:
        call.cancel()
        raise
    finally:
        watch.stop()


class Renderer(Protocol):
    """Writes one streamed completion's server-sent events."""

    def start(self) -> bytes:
        """The events that open the stream, once the task has started."""

    def delta(self, delta: scheduler_pb2.ContentDelta) -> bytes:
        """The event of one piece of output."""

    def finish(self, finished: scheduler_pb2.CompletionFinished) -> bytes:
        """The closing events, ending with `data: [DONE]`."""


@dataclass(frozen=True, slots=True)
class Reply:
    """How an endpoint answers one generation: with `stream`, as the events of the
    renderer it makes for the started task; else as one JSON `body` of the whole answer."""

    choices: int
    body: Callable[[Answer], bytes]
    stream: Callable[[scheduler_pb2.TaskStarted], Renderer] | None = None


class Relay:
    """Answers generation requests from calls to the core, recording each outcome."""

    def __init__(self, metrics: GatewayMetrics, keepalive_s: float) -> None:
        self.metrics = metrics
        self._keepalive_s = keepalive_s

    async def counted(self, request: Request, handle: Handler) -> Response:
        """Runs `handle`, counting the request as failed when it answers with an error."""
        info = request_info(request)
        try:
            return await handle(request, info, time.perf_counter())
        except ApiError as err:
            info.error = info.error or err.code or str(err.status)
            self.metrics.failed(status=err.status, stream=bool(info.stream))
            raise

    async def generation(
        self, request: Request, info: RequestInfo, call: Any, reply: Reply, started_at: float
    ) -> Response:
        """The answer to a chat or text completion whose core `call` has begun."""
        async with answering(call, request, info) as watch:
            first = await call.read()  # the core answers it once the request is admitted
            headers = forwarded_headers(await call.initial_metadata(), info)
            if reply.stream is not None:
                watch.stop()  # the streaming response watches from here on
                stream = EventStream(call, reply.stream, info, self.metrics, started_at)
                return EventStreamResponse(stream.events(first, self._keepalive_s), headers)
            answer = await read_all(call, first, reply.choices)
        note_started(info, answer.started)
        record_completion(self.metrics, info, answer.finished, False, started_at)
        headers["x-queue-wait-ms"] = str(answer.started.queue_wait_ms)
        return Response(reply.body(answer), headers=headers, media_type="application/json")


def note_started(info: RequestInfo, started: scheduler_pb2.TaskStarted) -> None:
    info.model, info.worker_id, info.task_id = started.model, started.worker_id, started.task_id
    info.queue_wait_ms = started.queue_wait_ms


class EventStream:
    """One streaming completion: renders core events as SSE, records the outcome."""

    def __init__(
        self,
        call: Any,
        renderer: Callable[[scheduler_pb2.TaskStarted], Renderer],
        info: RequestInfo,
        metrics: GatewayMetrics,
        started_at: float,
    ) -> None:
        self._call = call
        self._make_renderer = renderer
        self._info = info
        self._metrics = metrics
        self._started_at = started_at
        self._renderer: Renderer | None = None
        self._done = False

    async def events(self, first: Any, keepalive_s: float) -> AsyncGenerator[bytes, None]:
        outcome: ApiError | None = None
        try:
            yield self._render(first)
            # Read on to the end after `finished` too: the call ends OK rather than cancelled.
            async with contextlib.aclosing(batches(self._call, keepalive_s)) as stream:
                async for batch in stream:
                    yield b"".join(map(self._render, batch)) if batch else KEEPALIVE
            if not self._done:
                outcome = ApiError(502, "The inference service ended the stream without a result.")
        except grpc.aio.AioRpcError as err:
            if not self._done:
                outcome = from_grpc(err, self._info.request_id)
                self._info.error = err.code().name
        except ApiError as err:
            outcome = err
        except (asyncio.CancelledError, GeneratorExit):
            self._cancelled()
            raise
        finally:
            self._call.cancel()
        if outcome is not None:
            self._metrics.failed(status=outcome.status, stream=True, model=self._served_model())
            yield sse_error_event(outcome)

    def _served_model(self) -> str:
        return self._info.model if self._renderer is not None and self._info.model else ""

    def _cancelled(self) -> None:
        if not self._done:
            self._info.error = "client_disconnected"
            self._metrics.failed(status=499, stream=True, model=self._served_model())

    def _render(self, message: Any) -> bytes:
        kind = message.WhichOneof("event")
        if kind == "delta":
            if self._renderer is None:
                raise ApiError(502, "The inference service sent output before the task started.")
            return self._renderer.delta(message.delta)
        if kind == "queued":
            return b": queue position %d\n\n" % message.queued.position
        if kind == "started":
            note_started(self._info, message.started)
            self._renderer = self._make_renderer(message.started)
            return self._renderer.start()
        if kind == "finished":
            return self._finish(message.finished)
        return b""

    def _finish(self, finished: scheduler_pb2.CompletionFinished) -> bytes:
        if self._renderer is None:
            raise ApiError(502, "The inference service finished a task that never started.")
        self._done = True
        record_completion(self._metrics, self._info, finished, True, self._started_at)
        return self._renderer.finish(finished)


def record_completion(
    metrics: GatewayMetrics,
    info: RequestInfo,
    finished: scheduler_pb2.CompletionFinished,
    stream: bool,
    started_at: float,
) -> None:
    usage = finished.usage
    info.prompt_tokens, info.completion_tokens = usage.prompt_tokens, usage.completion_tokens
    info.ttft_ms = finished.time_to_first_token_ms
    metrics.completed(
        model=info.model or "",
        stream=stream,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        queue_wait_ms=info.queue_wait_ms or 0,
        ttft_ms=finished.time_to_first_token_ms,
        total_s=time.perf_counter() - started_at,
    )


def record_embedding(
    metrics: GatewayMetrics, info: RequestInfo, usage: chat_pb2.Usage, started_at: float
) -> None:
    """An embedding's outcome: the completion metrics bar time to first token and output."""
    info.prompt_tokens = usage.prompt_tokens
    model = info.model or ""
    metrics.requests.labels(model, "200", "false").inc()
    metrics.tokens.labels(model, "prompt").inc(usage.prompt_tokens)
    metrics.queue_wait.labels(model).observe((info.queue_wait_ms or 0) / 1000.0)
    metrics.latency.labels(model, "false").observe(time.perf_counter() - started_at)
