"""POST /v1/responses (and /api/v1/responses): OpenAI's Responses API, run as a chat completion.

The request becomes a CreateChatCompletion call made exactly as the chat route
makes it, so keys, limits, priority, queueing, cancellation, usage and metrics
are the chat route's. Nothing is stored: a Response cannot be fetched or
continued later. The response id is the gateway's own; the access log line pairs
it with the core's task id.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncGenerator
from typing import Any

import grpc
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from gpucloud.v1 import scheduler_pb2_grpc
from gpucloud_gateway import responses_objects as objects
from gpucloud_gateway.choices import Answer, read_all
from gpucloud_gateway.errors import ApiError, from_grpc
from gpucloud_gateway.metadata import core_metadata
from gpucloud_gateway.metrics import GatewayMetrics
from gpucloud_gateway.middleware import RequestInfo
from gpucloud_gateway.openai_routes import PREFIXES
from gpucloud_gateway.openapi import ApiRoute, Operation
from gpucloud_gateway.relay import (
    Relay,
    answering,
    bearer,
    forwarded_headers,
    note_started,
    record_completion,
)
from gpucloud_gateway.responses_output import ResponseBuilder, encode
from gpucloud_gateway.responses_protocol import (
    RESPONSES_REQUEST,
    ResponsesParams,
    parse_responses_request,
)
from gpucloud_gateway.sse import KEEPALIVE, EventStreamResponse, batches

_DOC = Operation(
    "Create a model response (OpenAI's Responses API, run as a chat completion; nothing is "
    "stored); with `stream: true`, as server-sent events named by their `type`",
    "OpenAI",
    "api_key",
    objects.Response,
    body=RESPONSES_REQUEST,
    events={
        "response.created": objects.ResponseEvent,
        "response.queued": objects.ResponseEvent,
        "response.in_progress": objects.ResponseEvent,
        "response.output_item.added": objects.OutputItemEvent,
        "response.content_part.added": objects.ContentPartEvent,
        "response.output_text.delta": objects.OutputTextDeltaEvent,
        "response.function_call_arguments.delta": objects.ArgumentsDeltaEvent,
        "response.output_text.done": objects.OutputTextDoneEvent,
        "response.function_call_arguments.done": objects.ArgumentsDoneEvent,
        "response.content_part.done": objects.ContentPartEvent,
        "response.output_item.done": objects.OutputItemEvent,
        "response.completed": objects.ResponseEvent,
        "response.incomplete": objects.ResponseEvent,
        "response.failed": objects.ResponseEvent,
    },
)


class ResponsesRoutes:
    """The Responses handler, sharing the chat route's channel and metrics."""

    def __init__(self, channel: grpc.aio.Channel, metrics: GatewayMetrics, keepalive_s: float):
        self._scheduler = scheduler_pb2_grpc.SchedulerServiceStub(channel)
        self._metrics = metrics
        self._keepalive_s = keepalive_s
        self._relay = Relay(metrics, keepalive_s)

    def routes(self) -> list[BaseRoute]:
        return [
            ApiRoute(f"{prefix}/responses", self.create, method="POST", doc=_DOC)
            for prefix in PREFIXES
        ]

    async def create(self, request: Request) -> Response:
        return await self._relay.counted(request, self._create)

    async def _create(self, request: Request, info: RequestInfo, started_at: float) -> Response:
        authorization = bearer(request)
        params = parse_responses_request(await request.body())
        info.model, info.stream = params.request.model, params.stream
        key, now = uuid.uuid4().hex, int(time.time())
        builder = ResponseBuilder(key, now, params.request.model, params.echo, params.obfuscate)
        info.extra["response_id"] = builder.id
        call = self._scheduler.CreateChatCompletion(
            params.request, metadata=core_metadata(request, authorization)
        )
        try:
            async with answering(call, request, info) as watch:
                first = await call.read()  # the core answers it once the request is admitted
                headers = forwarded_headers(await call.initial_metadata(), info)
                if params.stream:
                    watch.stop()  # the streaming response watches from here on
                    stream = ResponseStream(call, params, builder, info, self._metrics, started_at)
                    return EventStreamResponse(stream.events(first, self._keepalive_s), headers)
                answer = await read_all(call, first, 1)
        except ApiError as err:
            raise params.renamed(err) from None
        note_started(info, answer.started)
        record_completion(self._metrics, info, answer.finished, False, started_at)
        headers["x-queue-wait-ms"] = str(answer.started.queue_wait_ms)
        body = orjson.dumps(_whole(builder, answer))
        return Response(body, headers=headers, media_type="application/json")


def _whole(builder: ResponseBuilder, answer: Answer) -> objects.Response:
    """The Response of a completion read whole."""
    builder.started(answer.started)
    choice = answer.choices[0]
    if choice.content or choice.logprobs:
        builder.text(choice.content, choice.logprobs)
    for index, call in sorted(choice.calls.items()):
        builder.call(index, call.id, call.name, "".join(call.arguments))
    response: objects.Response = builder.finish(answer.finished)[-1]["response"]
    return response


class ResponseStream:
    """One streaming response: renders core events as Responses events, records the outcome.
    A failure once the stream has begun ends it with `response.failed`."""

    def __init__(
        self,
        call: Any,
        params: ResponsesParams,
        builder: ResponseBuilder,
        info: RequestInfo,
        metrics: GatewayMetrics,
        started_at: float,
    ) -> None:
        self._call = call
        self._params = params
        self._builder = builder
        self._info = info
        self._metrics = metrics
        self._started_at = started_at
        self._started = False
        self._done = False

    async def events(self, first: Any, keepalive_s: float) -> AsyncGenerator[bytes, None]:
        outcome: ApiError | None = None
        try:
            yield encode(self._builder.begin(queued=first.WhichOneof("event") == "queued"))
            yield self._render(first)
            # Read on to the end after `finished` too: the call ends OK rather than cancelled.
            async with contextlib.aclosing(batches(self._call, keepalive_s)) as stream:
                async for batch in stream:
                    yield b"".join(map(self._render, batch)) if batch else KEEPALIVE
            if not self._done:
                outcome = ApiError(502, "The inference service ended the stream without a result.")
        except grpc.aio.AioRpcError as err:
            if not self._done:
                outcome = self._params.renamed(from_grpc(err, self._info.request_id))
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
            yield encode(self._builder.failed(outcome))

    def _served_model(self) -> str:
        return self._info.model if self._started and self._info.model else ""

    def _cancelled(self) -> None:
        if not self._done:
            self._info.error = "client_disconnected"
            self._metrics.failed(status=499, stream=True, model=self._served_model())

    def _render(self, message: Any) -> bytes:
        kind = message.WhichOneof("event")
        if kind == "delta":
            if not self._started:
                raise ApiError(502, "The inference service sent output before the task started.")
            return encode(self._builder.delta(message.delta)) if message.delta.index == 0 else b""
        if kind == "queued":
            return b": queue position %d\n\n" % message.queued.position
        if kind == "started":
            self._started = True
            note_started(self._info, message.started)
            return encode(self._builder.started(message.started))
        if kind == "finished":
            if not self._started:
                raise ApiError(502, "The inference service finished a task that never started.")
            self._done = True
            record_completion(self._metrics, self._info, message.finished, True, self._started_at)
            return encode(self._builder.finish(message.finished))
        return b""
