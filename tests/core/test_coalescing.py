"""Output that piles up behind a slow reader travels in fewer, larger messages."""

from __future__ import annotations

from core_cluster import ScriptedBackend

from gpucloud.v1 import scheduler_pb2, worker_pb2
from gpucloud_server.principal import KeyPrincipal
from gpucloud_server.scheduling.tasks import Delta, Finished, Task, TaskSpec
from gpucloud_server.servicers.scheduler import _coalesce
from gpucloud_worker.agent import WorkerAgent
from gpucloud_worker.config import WorkerSettings

KEY = KeyPrincipal("k", "u", "k", 5, frozenset(), 0, 0)


def test_waiting_deltas_of_one_choice_join_and_the_rest_is_kept() -> None:
    task = Task("t", TaskSpec("m", 5, KEY, "r", None), enqueued_at=0.0, created_at=0.0)
    for event in (Delta(0, "b"), Delta(0, "c"), Delta(1, "x"), Delta(0, "d")):
        task.events.put_nowait(event)
    joined, held = _coalesce(Delta(0, "a"), task)
    assert joined == Delta(0, "abc")
    assert held == Delta(1, "x")
    assert task.events.get_nowait() == Delta(0, "d")


def test_a_lone_delta_is_left_alone() -> None:
    task = Task("t", TaskSpec("m", 5, KEY, "r", None), enqueued_at=0.0, created_at=0.0)
    task.events.put_nowait(Finished((), 1, 1, 0))
    joined, held = _coalesce(Delta(0, "a"), task)
    assert joined == Delta(0, "a")
    assert isinstance(held, Finished)


def _chunk(task_id: str, text: str, index: int = 0) -> scheduler_pb2.WorkerSessionRequest:
    return scheduler_pb2.WorkerSessionRequest(
        chunk=worker_pb2.TaskChunk(task_id=task_id, attempt=1, index=index, text=text, tokens=1)
    )


async def test_the_agent_sends_queued_chunks_of_a_choice_as_one_message() -> None:
    agent = WorkerAgent(WorkerSettings("127.0.0.1:1", "t", "w", "w"), ScriptedBackend())
    for message in (
        _chunk("a", "1"), _chunk("a", "2"), _chunk("b", "x"), _chunk("a", "3"), _chunk("a", "4"),
    ):  # fmt: skip
        agent._outbox.put_nowait(message)
    agent._outbox.put_nowait(None)
    sent = [m.chunk async for m in agent._writer()]
    assert [(c.task_id, c.text, c.tokens) for c in sent] == [
        ("a", "12", 2),
        ("b", "x", 1),
        ("a", "34", 2),
    ]
