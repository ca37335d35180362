"""Relaying gRPC calls to HTTP clients that may leave: SSE with keep-alives, disconnect watch.

A pump task reads the call (cancelling a pending `call.read()` would cancel
the RPC, so reads are never timed out) into a bounded queue, so a slow client
slows the call down; the writer waits on the queue with a timeout and sends a
comment line when idle. Whatever ends the response — the stream, an error or
the client leaving — the generator is closed and the gRPC call cancelled,
which cancels the task on the worker. Handlers that answer
once at the end watch for the disconnect themselves (DisconnectWatch).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Mapping
from typing import Any

import grpc
from starlette.requests import ClientDisconnect
from starlette.responses import StreamingResponse
from starlette.types import Message, Receive, Scope, Send

KEEPALIVE = b": keep-alive\n\n"
SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}

# Messages read ahead of a slow client; past this the pump stops reading, so gRPC flow
# control pushes back on the core instead of the gateway buffering a whole completion.
READ_AHEAD = 64

_EOF = object()


class EventStreamResponse(StreamingResponse):
    """A `text/event-stream` response that always closes its generator when it ends."""

    media_type = "text/event-stream"

    def __init__(
        self, content: AsyncGenerator[bytes, None], headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(content, headers={**SSE_HEADERS, **(headers or {})})
        self._events = content

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except (ClientDisconnect, OSError):
            pass  # the client left; the finally below stops the upstream work
        finally:
            # On a disconnect Starlette cancels the writer, which may leave the generator
            # suspended at a `yield`; closing it runs its cleanup (and cancels the call) now.
            await self._events.aclose()


async def _pump(call: Any, queue: asyncio.Queue[Any]) -> None:
    try:
        while True:
            message = await call.read()
            if message is grpc.aio.EOF:
                await queue.put(_EOF)
                return
            await queue.put(message)
    except asyncio.CancelledError:
        raise
    except Exception as err:  # handed to the writer, which reports it
        await queue.put(err)


async def batches(call: Any, keepalive_s: float) -> AsyncGenerator[list[Any], None]:
    """The messages of a server-streaming call, in batches of those already received;
    an empty batch after `keepalive_s` of silence. Raises the call's error after the
    messages that preceded it; cancels the call when closed early."""
    queue: asyncio.Queue[Any] = asyncio.Queue(READ_AHEAD)
    pump = asyncio.create_task(_pump(call, queue))
    try:
        while True:
            try:
                async with asyncio.timeout(keepalive_s):
                    item = await queue.get()
            except TimeoutError:
                yield []
                continue
            batch: list[Any] = []
            while True:
                if item is _EOF:
                    if batch:
                        yield batch
                    return
                if isinstance(item, BaseException):
                    if batch:
                        yield batch
                    raise item
                batch.append(item)
                if queue.empty():
                    break
                item = queue.get_nowait()
            yield batch
    finally:
        pump.cancel()
        call.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pump


class DisconnectWatch:
    """Cancels `call` when the HTTP client disconnects while the handler waits on the core.

    Starlette only notices disconnects while a streaming response runs; a handler
    awaiting a whole completion would otherwise keep the worker busy for nobody.
    Stop the watch before a response starts: it must not compete for `receive`.
    """

    def __init__(self, receive: Receive, call: Any) -> None:
        self.disconnected = False
        self._task = asyncio.create_task(self._watch(receive, call))

    async def _watch(self, receive: Receive, call: Any) -> None:
        message: Message = await receive()
        while message["type"] != "http.disconnect":
            message = await receive()
        self.disconnected = True
        call.cancel()

    def stop(self) -> None:
        self._task.cancel()
