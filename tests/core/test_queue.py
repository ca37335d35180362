"""The fair priority queue on its own: priority, fairness, FIFO, ageing, positions."""

from __future__ import annotations

from dataclasses import dataclass

from gpucloud_server.scheduling.queue import FairQueue


@dataclass
class T:
    id: str
    key_id: str
    priority: int = 5
    model: str = "m"
    enqueued_at: float = 0.0


def drain(queue: FairQueue[T], now: float = 0.0) -> list[str]:
    out = []
    while (task := queue.pop({"m", "other"}, now)) is not None:
        out.append(task.id)
    return out


def test_higher_priority_runs_first() -> None:
    q: FairQueue[T] = FairQueue(100, ageing_step_s=1000)
    q.push(T("low", "a", priority=2))
    q.push(T("high", "b", priority=9))
    q.push(T("mid", "c", priority=5))
    assert drain(q) == ["high", "mid", "low"]


def test_fifo_within_a_key() -> None:
    q: FairQueue[T] = FairQueue(100, ageing_step_s=1000)
    for i in range(5):
        q.push(T(f"a{i}", "a", enqueued_at=i))
    assert drain(q, now=10) == [f"a{i}" for i in range(5)]


def test_a_flooding_key_does_not_starve_another_key_of_the_same_priority() -> None:
    q: FairQueue[T] = FairQueue(1000, ageing_step_s=1000)
    for i in range(100):
        q.push(T(f"flood{i}", "flood", enqueued_at=0.0))
    q.push(T("b0", "b", enqueued_at=1.0))
    q.push(T("b1", "b", enqueued_at=1.0))
    order = drain(q, now=2.0)
    # Round-robin: b's tasks run within the first rounds, not after the flood.
    assert order.index("b0") <= 1
    assert order.index("b1") <= 3


def test_ageing_lifts_a_starved_low_priority_task() -> None:
    q: FairQueue[T] = FairQueue(1000, ageing_step_s=10)
    q.push(T("old-low", "a", priority=1, enqueued_at=0.0))
    for i in range(5):
        q.push(T(f"new-high{i}", "b", priority=5, enqueued_at=45.0))
    # At t=46 the low task has waited 46 s: +4 levels -> 5, and it is the older one.
    assert q.pop({"m"}, now=46.0).id == "old-low"  # type: ignore[union-attr]


def test_without_enough_ageing_priority_wins() -> None:
    q: FairQueue[T] = FairQueue(1000, ageing_step_s=10)
    q.push(T("old-low", "a", priority=1, enqueued_at=0.0))
    q.push(T("high", "b", priority=5, enqueued_at=5.0))
    assert q.pop({"m"}, now=6.0).id == "high"  # type: ignore[union-attr]


def test_only_eligible_models_are_popped() -> None:
    q: FairQueue[T] = FairQueue(100, ageing_step_s=1000)
    q.push(T("x", "a", model="other", priority=9))
    q.push(T("y", "a", model="m"))
    assert q.pop({"m"}, now=0).id == "y"  # type: ignore[union-attr]
    assert q.pop({"m"}, now=0) is None
    assert len(q) == 1


def test_position_counts_round_robin_competitors() -> None:
    q: FairQueue[T] = FairQueue(100, ageing_step_s=1000)
    for i in range(3):
        q.push(T(f"a{i}", "a", enqueued_at=0.0))
    q.push(T("b0", "b", enqueued_at=1.0))
    assert q.position("a0", now=2.0) == 0
    assert q.position("b0", now=2.0) == 1  # behind a0 only
    assert q.position("a2", now=2.0) == 3  # a0, a1 and b0 first
    assert q.position("missing", now=2.0) is None


def test_remove_and_requeue_at_front() -> None:
    q: FairQueue[T] = FairQueue(100, ageing_step_s=1000)
    q.push(T("a0", "a"))
    q.push(T("a1", "a"))
    removed = q.remove("a0")
    assert removed is not None and "a0" not in q
    q.push(removed, front=True)
    assert drain(q) == ["a0", "a1"]
