"""A tiny in-process pub/sub for live views: slow subscribers lose old items, never block."""

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
