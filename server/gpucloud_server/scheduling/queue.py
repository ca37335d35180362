"""The fair priority queue: priority first, fair share across keys, FIFO within a key.

Tasks wait in sub-queues keyed by (model, priority, key). The next task is the
head of the sub-queue with the highest *effective* priority; ties go to the
sub-queue that has been starved longest. A sub-queue is starved since its key
was last served at that priority (or since its head arrived, if later), so a
key that floods the queue is served once per round while others wait, and
ageing lifts any starved sub-queue one priority level per `ageing_step_s` until
it runs: low priority never starves.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

MAX_PRIORITY = 10


class Queueable(Protocol):
    """What the queue needs to know of a task."""

    @property
    def id(self) -> str: ...

    @property
    def model(self) -> str: ...

    @property
    def priority(self) -> int: ...

    @property
    def key_id(self) -> str: ...

    @property
    def enqueued_at(self) -> float: ...


SubKey = tuple[str, int, str]  # (model, priority, key id)
T = TypeVar("T", bound=Queueable)


@dataclass(slots=True)
class _SubQueue(Generic[T]):
    key: SubKey
    tasks: deque[T] = field(default_factory=deque)


class FairQueue(Generic[T]):
    """An in-process fair priority queue; all methods are O(sub-queues) at most."""

    def __init__(self, capacity: int, ageing_step_s: float) -> None:
        self.capacity = capacity
        self._ageing_step_s = ageing_step_s
        self._subs: dict[SubKey, _SubQueue[T]] = {}
        self._where: dict[str, SubKey] = {}
        self._per_key: dict[str, int] = {}
        self._last_served: dict[tuple[int, str], tuple[float, int]] = {}  # (time, serial)
        self._serial = 0

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._where

    def push(self, task: T, *, front: bool = False) -> None:
        """Adds a task; `front` puts a re-queued task back at the head of its key's line."""
        key = (task.model, task.priority, task.key_id)
        sub = self._subs.get(key)
        if sub is None:
            sub = self._subs[key] = _SubQueue(key)
        if front:
            sub.tasks.appendleft(task)
        else:
            sub.tasks.append(task)
        self._where[task.id] = key
        self._per_key[task.key_id] = self._per_key.get(task.key_id, 0) + 1

    def queued_for(self, key_id: str) -> int:
        """Tasks of one API key waiting now."""
        return self._per_key.get(key_id, 0)

    def _counted_out(self, key_id: str) -> None:
        left = self._per_key[key_id] - 1
        if left:
            self._per_key[key_id] = left
        else:
            del self._per_key[key_id]

    def remove(self, task_id: str) -> T | None:
        key = self._where.pop(task_id, None)
        if key is None:
            return None
        sub = self._subs[key]
        for task in sub.tasks:
            if task.id == task_id:
                sub.tasks.remove(task)
                break
        else:  # pragma: no cover - _where and _subs always agree
            return None
        if not sub.tasks:
            del self._subs[key]
        self._counted_out(task.key_id)
        return task

    def pop(self, models: Iterable[str], now: float) -> T | None:
        """Takes the next task among those for `models`, or None."""
        eligible = set(models)
        best = self._best((s for s in self._subs.values() if s.key[0] in eligible), now)
        if best is None:
            return None
        task = best.tasks.popleft()
        if not best.tasks:
            del self._subs[best.key]
        del self._where[task.id]
        self._counted_out(task.key_id)
        _, priority, key_id = best.key
        self._serial += 1
        self._last_served[(priority, key_id)] = (now, self._serial)
        return task

    def position(self, task_id: str, now: float) -> int | None:
        """How many tasks for the same model would run before this one (an estimate
        under round-robin: one task per competing sub-queue per round)."""
        key = self._where.get(task_id)
        if key is None:
            return None
        mine = self._subs[key]
        index = next(i for i, t in enumerate(mine.tasks) if t.id == task_id)
        my_rank = self._rank(mine, now)
        ahead = index
        for sub in self._subs.values():
            if sub is mine or sub.key[0] != key[0]:
                continue
            rank = self._rank(sub, now)
            if rank[0] > my_rank[0]:
                ahead += len(sub.tasks)
            elif rank[0] == my_rank[0]:
                ahead += min(len(sub.tasks), index + (1 if rank > my_rank else 0))
        return ahead

    def tasks(self) -> Iterator[T]:
        for sub in self._subs.values():
            yield from sub.tasks

    def depth_by_priority(self) -> dict[int, int]:
        depth: dict[int, int] = {}
        for (_, priority, _), sub in self._subs.items():
            depth[priority] = depth.get(priority, 0) + len(sub.tasks)
        return depth

    def forget_keys_idle_since(self, cutoff: float) -> None:
        """Drops fairness memory of keys not served since `cutoff` (bounded memory)."""
        for served_key, (at, _) in list(self._last_served.items()):
            if at < cutoff:
                del self._last_served[served_key]

    def _rank(self, sub: _SubQueue[T], now: float) -> tuple[int, float, int]:
        _, priority, key_id = sub.key
        served_at, serial = self._last_served.get((priority, key_id), (-math.inf, 0))
        since = max(sub.tasks[0].enqueued_at, served_at)
        boost = int((now - since) / self._ageing_step_s) if self._ageing_step_s > 0 else 0
        # Higher effective priority first; within it, the longest starved first, and
        # on a tie the key served least recently.
        return min(MAX_PRIORITY, priority + boost), -since, -serial

    def _best(self, subs: Iterable[_SubQueue[T]], now: float) -> _SubQueue[T] | None:
        best: _SubQueue[T] | None = None
        best_rank: tuple[int, float, int] | None = None
        for sub in subs:
            rank = self._rank(sub, now)
            if best_rank is None or rank > best_rank:
                best, best_rank = sub, rank
        return best
