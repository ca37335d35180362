"""In-process signals for live views: a pub/sub whose slow subscribers lose old items
rather than block, and a version counter that waiters follow without polling."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

T = TypeVar("T")


class Hub(Generic[T]):
    def __init__(self, buffer: int = 256) -> None:
        self._buffer = buffer
        self._subscribers: set[asyncio.Queue[T]] = set()

    def publish(self, item: T) -> None:
        for queue in self._subscribers:
            if queue.full():
                queue.get_nowait()  # a slow viewer skips old news rather than stall the core
            queue.put_nowait(item)

    @contextmanager
    def subscribe(self) -> Iterator[asyncio.Queue[T]]:
        queue: asyncio.Queue[T] = asyncio.Queue(self._buffer)
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)


class Version:
    """Counts changes to some state; `wait` returns once it moved past a seen value.

    Each change sets the current event and replaces it, so every waiter wakes at once
    and the synchronous code that bumps it needs no lock (an `asyncio.Condition` would)."""

    def __init__(self) -> None:
        self._value = 0
        self._moved = asyncio.Event()

    @property
    def value(self) -> int:
        return self._value

    def bump(self) -> None:
        self._value += 1
        self._moved.set()
        self._moved = asyncio.Event()

    async def wait(self, seen: int) -> None:
        """Returns once the value differs from `seen` (at once if it already does)."""
        while self._value == seen:
            await self._moved.wait()
