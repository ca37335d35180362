"""The relay gateway: POST /v1/chat/completions forwarded over one grpc.aio channel.

    RELAY_CORE=127.0.0.1:50061 python -m uvicorn --factory bench.relay.gateway:create_app \
        --port 8002 --http httptools --loop uvloop --no-access-log --lifespan off
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from gpucloud.v1 import chat_pb2, scheduler_pb2, scheduler_pb2_grpc

FINISH = {chat_pb2.FINISH_REASON_STOP: "stop", chat_pb2.FINISH_REASON_LENGTH: "length"}


def to_request(body: dict[str, Any]) -> scheduler_pb2.CreateChatCompletionRequest:
    return scheduler_pb2.CreateChatCompletionRequest(
        model=body["model"],
        messages=[
            chat_pb2.ChatMessage(role=m["role"], content=m["content"]) for m in body["messages"]
        ],
        sampling=chat_pb2.SamplingParams(max_tokens=body.get("max_tokens") or 0),
    )


def chunk(head: dict[str, Any], delta: dict[str, str], finish_reason: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
    return b"data: " + orjson.dumps({**head, "choices": [choice]}) + b"\n\n"


async def events(call: Any) -> AsyncIterator[bytes]:
    head: dict[str, Any] = {}
    async for message in call:
        kind = message.WhichOneof("event")
        if kind == "delta":
            yield chunk(head, {"content": message.delta.text})
        elif kind == "started":
            s = message.started
            head = {"id": f"chatcmpl-{s.task_id}", "object": "chat.completion.chunk",
                    "created": int(time.time()), "model": s.model}  # fmt: skip
            yield chunk(head, {"role": "assistant", "content": ""})
        elif kind == "finished":
            reason = FINISH.get(message.finished.choices[0].reason, "stop")
            yield chunk(head, {}, reason) + b"data: [DONE]\n\n"


async def completion(call: Any) -> dict[str, Any]:
    texts: list[str] = []
    started = scheduler_pb2.TaskStarted()
    finished = scheduler_pb2.CompletionFinished()
    async for message in call:
        kind = message.WhichOneof("event")
        if kind == "delta":
            texts.append(message.delta.text)
        elif kind == "started":
            started = message.started
        elif kind == "finished":
            finished = message.finished
    usage = finished.usage
    message = {"role": "assistant", "content": "".join(texts)}
    reason = FINISH.get(finished.choices[0].reason, "stop")
    return {
        "id": f"chatcmpl-{started.task_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": started.model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": reason}],
        "usage": {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
        },
    }


def create_app() -> Starlette:
    core = os.environ["RELAY_CORE"]
    stubs: list[scheduler_pb2_grpc.SchedulerServiceStub] = []

    def scheduler() -> scheduler_pb2_grpc.SchedulerServiceStub:
        # Created on first use, inside the server's event loop.
        if not stubs:
            stubs.append(scheduler_pb2_grpc.SchedulerServiceStub(grpc.aio.insecure_channel(core)))
        return stubs[0]

    async def chat(request: Request) -> Response:
        body = orjson.loads(await request.body())
        call = scheduler().CreateChatCompletion(to_request(body))
        if body.get("stream"):
            return StreamingResponse(events(call), media_type="text/event-stream")
        return Response(orjson.dumps(await completion(call)), media_type="application/json")

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
