"""The SSE relay's pump: it reads ahead of a slow client only as far as its bounded queue."""

from __future__ import annotations

import asyncio

from gpucloud_gateway.sse import READ_AHEAD, batches


class EndlessCall:
    """A server-streaming call that always has another message ready."""

    def __init__(self) -> None:
        self.reads = 0
        self.cancelled = False

    async def read(self) -> int:
        await asyncio.sleep(0)  # a real read suspends, letting the writer run
        self.reads += 1
        return self.reads

    def cancel(self) -> bool:
        self.cancelled = True
        return True


async def test_a_slow_reader_stops_the_pump_at_the_read_ahead_bound() -> None:
    call = EndlessCall()
    stream = batches(call, keepalive_s=60.0)
    first = await anext(stream)
    for _ in range(20 * READ_AHEAD):  # the client is busy; the pump gets every turn
        await asyncio.sleep(0)
    # What was handed out, a full queue, and the one message waiting to be put.
    assert call.reads <= len(first) + READ_AHEAD + 1
    second = await anext(stream)
    assert second[0] == first[-1] + 1
    assert len(second) <= READ_AHEAD
    await stream.aclose()
    assert call.cancelled


async def test_a_silent_call_yields_empty_keepalive_batches() -> None:
    class SilentCall(EndlessCall):
        async def read(self) -> int:
            await asyncio.Event().wait()
            raise AssertionError("unreachable")

    call = SilentCall()
    stream = batches(call, keepalive_s=0.01)
    assert await anext(stream) == []
    await stream.aclose()
    assert call.cancelled
