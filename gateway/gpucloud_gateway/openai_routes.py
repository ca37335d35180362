"""The OpenAI-compatible routes (/v1 and /api/v1): HTTP + SSE in, SchedulerService calls out."""

from __future__ import annotations

from functools import partial

import grpc
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from gpucloud.v1 import scheduler_pb2, scheduler_pb2_grpc
from gpucloud_gateway import completions_protocol as completions
from gpucloud_gateway import embeddings_protocol as embeddings
from gpucloud_gateway import openai_objects as objects
from gpucloud_gateway.errors import ApiError, from_grpc
from gpucloud_gateway.metadata import core_metadata
from gpucloud_gateway.metrics import GatewayMetrics
from gpucloud_gateway.middleware import RequestInfo, request_info
from gpucloud_gateway.openai_protocol import (
    CHAT_REQUEST,
    ChunkRenderer,
    completion_body,
    parse_chat_request,
)
from gpucloud_gateway.openapi import ApiRoute, Operation
from gpucloud_gateway.relay import (
    Relay,
    Reply,
    answering,
    bearer,
    forwarded_headers,
    note_started,
    record_embedding,
)

PREFIXES = ("/v1", "/api/v1")
_STREAMED = "; with `stream: true`, as server-sent events ended by `data: [DONE]`"
_CHAT_DOC = Operation(
    "Create a chat completion" + _STREAMED,
    "OpenAI",
    "api_key",
    objects.ChatCompletion,
    body=CHAT_REQUEST,
    events={"message": objects.ChatCompletionChunk},
)
_COMPLETION_DOC = Operation(
    "Create a text completion (legacy)" + _STREAMED,
    "OpenAI",
    "api_key",
    completions.Completion,
    body=completions.COMPLETION_REQUEST,
    events={"message": completions.Completion},
)
_EMBEDDING_DOC = Operation(
    "Embed texts or token ids",
    "OpenAI",
    "api_key",
    embeddings.CreateEmbeddingResponse,
    body=embeddings.EMBEDDING_REQUEST,
)
_MODELS_DOC = Operation("The models online workers serve", "OpenAI", "api_key", objects.ModelList)
_MODEL_DOC = Operation(
    "One model, if an online worker serves it", "OpenAI", "api_key", objects.Model
)


class OpenAIRoutes:
    """Handlers sharing one channel's SchedulerService stub and the metrics."""

    def __init__(self, channel: grpc.aio.Channel, metrics: GatewayMetrics, keepalive_s: float):
        self._scheduler = scheduler_pb2_grpc.SchedulerServiceStub(channel)
        self._metrics = metrics
        self._relay = Relay(metrics, keepalive_s)

    def routes(self) -> list[BaseRoute]:
        out: list[BaseRoute] = []
        for prefix in PREFIXES:
            out += [
                ApiRoute(f"{prefix}/chat/completions", self.chat, method="POST", doc=_CHAT_DOC),
                ApiRoute(
                    f"{prefix}/completions", self.complete, method="POST", doc=_COMPLETION_DOC
                ),
                ApiRoute(f"{prefix}/embeddings", self.embed, method="POST", doc=_EMBEDDING_DOC),
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
        return await self._relay.counted(request, self._chat)

    async def _chat(self, request: Request, info: RequestInfo, started_at: float) -> Response:
        authorization = bearer(request)
        params = parse_chat_request(await request.body())
        info.model, info.stream = params.request.model, params.stream
        call = self._scheduler.CreateChatCompletion(
            params.request, metadata=core_metadata(request, authorization)
        )
        reply = Reply(
            params.n,
            partial(completion_body, logprobs=params.logprobs),
            partial(ChunkRenderer, params=params) if params.stream else None,
        )
        return await self._relay.generation(request, info, call, reply, started_at)

    async def complete(self, request: Request) -> Response:
        return await self._relay.counted(request, self._complete)

    async def _complete(self, request: Request, info: RequestInfo, started_at: float) -> Response:
        authorization = bearer(request)
        params = completions.parse_completion_request(await request.body())
        info.model, info.stream = params.request.model, params.stream
        call = self._scheduler.CreateCompletion(
            params.request, metadata=core_metadata(request, authorization)
        )
        reply = Reply(
            params.choices,
            partial(completions.completion_body, logprobs=params.logprobs),
            partial(completions.CompletionChunks, params=params) if params.stream else None,
        )
        return await self._relay.generation(request, info, call, reply, started_at)

    async def embed(self, request: Request) -> Response:
        return await self._relay.counted(request, self._embed)

    async def _embed(self, request: Request, info: RequestInfo, started_at: float) -> Response:
        authorization = bearer(request)
        params = embeddings.parse_embedding_request(await request.body())
        info.model, info.stream = params.request.model, False
        call = self._scheduler.CreateEmbedding(
            params.request, metadata=core_metadata(request, authorization)
        )
        async with answering(call, request, info):
            reply = await call
            headers = forwarded_headers(await call.initial_metadata(), info)
        note_started(info, reply.started)
        record_embedding(self._metrics, info, reply.usage, started_at)
        headers["x-queue-wait-ms"] = str(reply.started.queue_wait_ms)
        body = embeddings.embedding_body(reply, params.as_base64)
        return Response(body, headers=headers, media_type="application/json")
