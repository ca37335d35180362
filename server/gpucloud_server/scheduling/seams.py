"""The seams a multi-core deployment replaces: the task queue and the channels.

Channels carry a task's events to the caller waiting for it, and assignments and
cancellations to a worker's session: the two signals that cross processes once the caller
and the worker may be connected to different cores. The in-process implementations are
`queue.FairQueue` and `asyncio.Queue`; a shared deployment passes the `Scheduler` ones
backed by Redis (a sorted-set queue, pub/sub channels) without touching its logic. One
signal stays local: `Scheduler.queue_version` moves on this core's own queue changes, so
queued callers of a shared queue hear moves made by other cores only at the next local one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, TypeVar

from gpucloud_server.scheduling.queue import Queueable

T = TypeVar("T", bound=Queueable)
E = TypeVar("E")


class TaskQueue(Protocol[T]):
    """Waiting tasks, handed out by priority and fair share."""

    capacity: int

    def __len__(self) -> int:
        """Tasks waiting."""

    def push(self, task: T, *, front: bool = False) -> None:
        """Adds a task; `front` re-queues at the head of its key's line."""

    def pop(self, models: Iterable[str], now: float) -> T | None:
        """Takes the next task among those for `models`."""

    def remove(self, task_id: str) -> T | None:
        """Withdraws a task (cancelled or expired)."""

    def queued_for(self, key_id: str) -> int:
        """Tasks of one API key waiting now."""

    def position(self, task_id: str, now: float) -> int | None:
        """Tasks that would run before this one."""

    def tasks(self) -> Iterator[T]:
        """Every waiting task."""

    def depth_by_priority(self) -> dict[int, int]:
        """Waiting tasks per priority."""

    def forget_keys_idle_since(self, cutoff: float) -> None:
        """Drops fairness state of long-idle keys."""


class TaskChannel(Protocol[E]):
    """Carries messages one way: one task's events from whoever runs it to whoever waits
    for it, or the core's messages to one worker session."""

    def put_nowait(self, item: E) -> None:
        """Publishes an event; never blocks the scheduler."""

    async def get(self) -> E:
        """Waits for the next event."""

    def get_nowait(self) -> E:
        """The next event already there."""

    def empty(self) -> bool:
        """True when no event is waiting."""


# Makes a new channel: for each task, and for each worker session.
ChannelFactory = Callable[[], TaskChannel[Any]]
