"""The OpenAI-compatible routes (/v1 and /api/v1): HTTP + SSE in, SchedulerService calls out."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Iterable
from typing import Any

import grpc
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from gpucloud.v1 import scheduler_pb2, scheduler_pb2_grpc
from gpucloud_gateway import openai_objects as objects
from gpucloud_gateway.errors import ApiError, from_grpc, sse_error_event
from gpucloud_gateway.metadata import core_metadata
from gpucloud_gateway.metrics import GatewayMetrics
from gpucloud_gateway.middleware import RequestInfo, request_info
from gpucloud_gateway.openai_protocol import (
    CHAT_REQUEST,
    ChatParams,
    ChunkRenderer,
    completion_body,
    parse_chat_request,
)
from gpucloud_gateway.openapi import ApiRoute, Operation
from gpucloud_gateway.sse import KEEPALIVE, DisconnectWatch, EventStreamResponse, batches

PREFIXES = ("/v1", "/api/v1")
_FORWARDED_PREFIXES = ("x-ratelimit-",)
_EOF = grpc.aio.EOF
_CHAT_DOC = Operation(
    "Create a chat completion; with `stream: true`, as server-sent events ended by `data: [DONE]`",
    "OpenAI",
    "api_key",
    objects.ChatCompletion,
    body=CHAT_REQUEST,
    events={"message": objects.ChatCompletionChunk},
)
_MODELS_DOC = Operation("The models online workers serve", "OpenAI", "api_key", objects.ModelList)
_MODEL_DOC = Operation(
    "One model, if an online worker serves it", "OpenAI", "api_key", objects.Model
)


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


class OpenAIRoutes:
    """Handlers sharing one channel's SchedulerService stub and the metrics."""

    def __init__(self, channel: grpc.aio.Channel, metrics: GatewayMetrics, keepalive_s: float):
        self._scheduler = scheduler_pb2_grpc.SchedulerServiceStub(channel)
        self._metrics = metrics
        self._keepalive_s = keepalive_s

    def routes(self) -> list[BaseRoute]:
        out: list[BaseRoute] = []
        for prefix in PREFIXES:
            out += [
                ApiRoute(f"{prefix}/chat/completions", self.chat, method="POST", doc=_CHAT_DOC),
                ApiRoute(f"{prefix}/models", self.list_models, method="GET", doc=_MODELS_DOC),
                ApiRoute(
                    f"{prefix}/models/{{model:path}}", self.get_model, method="GET", doc=_MODEL_DOC
                ),
            ]
        return out

    async def _models(self, request: Request) -> tuple[list[objects.Model], dict[str, str]]:
        info = request_info(request)
        call = self._scheduler.ListModels(
            scheduler_pb2.ListModelsRequest(),
            metadata=core_metadata(request, bearer(request)),
        )
        try:
            reply = await call
            headers = forwarded_headers(await call.initial_metadata(), info)
        except grpc.aio.AioRpcError as err:
            raise from_grpc(err, info.request_id) from None
        return [objects.model(m) for m in reply.models], headers

    async def list_models(self, request: Request) -> Response:
        models, headers = await self._models(request)
        body = orjson.dumps(objects.model_list(models))
        return Response(body, headers=headers, media_type="application/json")

    async def get_model(self, request: Request) -> Response:
        wanted = request.path_params["model"]
        models, headers = await self._models(request)
        for model in models:
            if model["id"] == wanted:
                return Response(orjson.dumps(model), headers=headers, media_type="application/json")
        raise ApiError(
            404,
            f"The model '{wanted}' does not exist or no worker serves it.",
            param="model",
            code="model_not_found",
            headers=headers,
        )

    async def chat(self, request: Request) -> Response:
        info = request_info(request)
        try:
            return await self._chat(request, info, time.perf_counter())
        except ApiError as err:
            info.error = info.error or err.code or str(err.status)
            self._metrics.failed(status=err.status, stream=bool(info.stream))
            raise

    async def _chat(self, request: Request, info: RequestInfo, started_at: float) -> Response:
        authorization = bearer(request)
        params = parse_chat_request(await request.body())
        info.model, info.stream = params.request.model, params.stream
        call = self._scheduler.CreateChatCompletion(
            params.request, metadata=core_metadata(request, authorization)
        )
        watch = DisconnectWatch(request.receive, call)
        try:
            first = await call.read()
            headers = forwarded_headers(await call.initial_metadata(), info)
            if params.stream:
                watch.stop()  # the streaming response watches from here on
                stream = ChatStream(call, params, info, self._metrics, started_at)
                return EventStreamResponse(stream.events(first, self._keepalive_s), headers)
            started, texts, finished = await _read_all(call, first, params.n)
        except asyncio.CancelledError:
            call.cancel()
            if watch.disconnected:
                raise ApiError(
                    499, "The client closed the request.", code="client_closed"
                ) from None
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
        note_started(info, started)
        record_completion(self._metrics, info, finished, False, started_at)
        headers["x-queue-wait-ms"] = str(started.queue_wait_ms)
        body = completion_body(started, texts, finished)
        return Response(body, headers=headers, media_type="application/json")


async def _read_all(
    call: Any, first: Any, n: int
) -> tuple[scheduler_pb2.TaskStarted, list[list[str]], scheduler_pb2.CompletionFinished]:
    """Reads a whole completion: its start, the text of each choice, and its end."""
    texts: list[list[str]] = [[] for _ in range(n)]
    started: scheduler_pb2.TaskStarted | None = None
    finished: scheduler_pb2.CompletionFinished | None = None
    message = first
    while message is not _EOF:
        kind = message.WhichOneof("event")
        if kind == "completed":  # the whole answer at once: what the gateway asks for
            started, finished = message.completed.started, message.completed.finished
            for choice in message.completed.choices:
                _append(texts, choice)
        elif kind == "delta":
            _append(texts, message.delta)
        elif kind == "started":
            started = message.started
        elif kind == "finished":
            finished = message.finished
        message = await call.read()
    if started is None or finished is None:
        raise ApiError(502, "The inference service ended the completion without a result.")
    return started, texts, finished


def _append(texts: list[list[str]], delta: scheduler_pb2.ContentDelta) -> None:
    while delta.index >= len(texts):
        texts.append([])
    texts[delta.index].append(delta.text)


def note_started(info: RequestInfo, started: scheduler_pb2.TaskStarted) -> None:
    info.model, info.worker_id, info.task_id = started.model, started.worker_id, started.task_id
    info.queue_wait_ms = started.queue_wait_ms


class ChatStream:
    """One streaming completion: renders core events as OpenAI chunks, records the outcome."""

    def __init__(
        self,
        call: Any,
        params: ChatParams,
        info: RequestInfo,
        metrics: GatewayMetrics,
        started_at: float,
    ) -> None:
        self._call = call
        self._params = params
        self._info = info
        self._metrics = metrics
        self._started_at = started_at
        self._renderer: ChunkRenderer | None = None
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
            return self._renderer.delta(message.delta.index, message.delta.text)
        if kind == "queued":
            return b": queue position %d\n\n" % message.queued.position
        if kind == "started":
            return self._start(message.started)
        if kind == "finished":
            return self._finish(message.finished)
        return b""

    def _start(self, started: scheduler_pb2.TaskStarted) -> bytes:
        note_started(self._info, started)
        self._renderer = ChunkRenderer(started, self._params.n, self._params.include_usage)
        return self._renderer.roles()

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
