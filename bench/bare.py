"""The ceiling: a bare Starlette endpoint answering an OpenAI-shaped chat completion.

    python -m uvicorn bench.bare:app --port 8001 --http httptools --loop uvloop --no-access-log

It reads and parses the body like a gateway would, then answers a fixed completion
(`max_tokens` words, or a stream of one SSE chunk per word) without any upstream call.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

WORD = " word"


def completion(model: str, tokens: int) -> dict[str, Any]:
    return {
        "id": "chatcmpl-bare",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": WORD * tokens},
                "finish_reason": "length",
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": tokens, "total_tokens": 9 + tokens},
    }


def event(model: str, delta: dict[str, str], finish_reason: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
    chunk = {
        "id": "chatcmpl-bare",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
    }
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


async def chunks(model: str, tokens: int) -> AsyncIterator[bytes]:
    """The product's chunk sequence: the role, one chunk per token, the finish, [DONE]."""
    yield event(model, {"role": "assistant", "content": ""})
    for _ in range(tokens):
        yield event(model, {"content": WORD})
    yield event(model, {}, "length") + b"data: [DONE]\n\n"


async def chat(request: Request) -> Response:
    body = orjson.loads(await request.body())
    model, tokens = body["model"], int(body.get("max_tokens") or 16)
    if body.get("stream"):
        return StreamingResponse(chunks(model, tokens), media_type="text/event-stream")
    return Response(orjson.dumps(completion(model, tokens)), media_type="application/json")


app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
