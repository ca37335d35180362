"""A scripted OpenAI-compatible upstream for worker tests: what real servers rarely do."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson

Reply = Callable[[asyncio.StreamWriter], Awaitable[None]]


def sse(*events: dict[str, Any] | str, done: bool = True) -> Reply:
    async def reply(writer: asyncio.StreamWriter) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n"
        )
        for event in events:
            data = event if isinstance(event, str) else orjson.dumps(event).decode()
            writer.write(f"data: {data}\n\n".encode())
            await writer.drain()
        if done:
            writer.write(b"data: [DONE]\n\n")

    return reply


def status(code: int, body: dict[str, Any]) -> Reply:
    async def reply(writer: asyncio.StreamWriter) -> None:
        payload = orjson.dumps(body)
        writer.write(
            f"HTTP/1.1 {code} X\r\ncontent-type: application/json\r\n"
            f"content-length: {len(payload)}\r\nconnection: close\r\n\r\n".encode()
            + payload
        )

    return reply


async def drop(writer: asyncio.StreamWriter) -> None:
    """The upstream dies after reading the request."""


async def hang(writer: asyncio.StreamWriter) -> None:
    """The upstream accepts the request and never answers (until the test ends)."""
    await asyncio.sleep(30)


def delta(text: str, index: int = 0, finish: str | None = None, **choice: Any) -> dict[str, Any]:
    """A chat chunk; `choice` adds to the choice (logprobs) or, as `tool_calls`, the delta."""
    message: dict[str, Any] = {"content": text}
    if "tool_calls" in choice:
        message["tool_calls"] = choice.pop("tool_calls")
    body = {"index": index, "delta": message, "finish_reason": finish, **choice}
    return {"object": "chat.completion.chunk", "choices": [body]}


def piece(text: str, index: int = 0, finish: str | None = None, **choice: Any) -> dict[str, Any]:
    """A text completion chunk; `choice` adds to the choice (logprobs)."""
    body = {"index": index, "text": text, "finish_reason": finish, **choice}
    return {"object": "text_completion", "choices": [body]}


class FakeUpstream:
    """A minimal HTTP/1.1 server playing an OpenAI-compatible upstream from a script."""

    def __init__(self) -> None:
        self.chat: Reply = sse(delta("hi", finish="stop"))
        self.completions: Reply = sse(piece("hi", finish="stop"))
        self.embeddings: Reply = status(200, {"data": [], "usage": {"prompt_tokens": 0}})
        self.models: Reply = status(200, {"object": "list", "data": [{"id": "m", "owned_by": "o"}]})
        self.requests: list[tuple[str, dict[str, str], Any]] = []
        self.port = 0
        self.handlers: set[asyncio.Task[Any]] = set()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self.handlers.add(handler)
        try:
            await self._answer(reader, writer)
        finally:
            writer.close()
            self.handlers.discard(handler)

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode().split("\r\n")
        path = head[0].split()[1]
        headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:] if h)}
        body = await reader.readexactly(int(headers.get("content-length", 0)))
        self.requests.append((path, headers, orjson.loads(body) if body else None))
        with contextlib.suppress(ConnectionError):
            await self._reply(path)(writer)
            await writer.drain()

    def _reply(self, path: str) -> Reply:
        if path.endswith("/models"):
            return self.models
        if path.endswith("/embeddings"):
            return self.embeddings
        if path.endswith("/completions") and not path.endswith("/chat/completions"):
            return self.completions
        return self.chat


@contextlib.asynccontextmanager
async def serving() -> AsyncIterator[FakeUpstream]:
    """A FakeUpstream listening on a free local port until the block ends."""
    fake = FakeUpstream()
    server = await asyncio.start_server(fake.serve, "127.0.0.1", 0)
    fake.port = server.sockets[0].getsockname()[1]
    try:
        yield fake
    finally:
        server.close()
        for handler in list(fake.handlers):
            handler.cancel()
        await asyncio.gather(*fake.handlers, return_exceptions=True)
        await server.wait_closed()
