"""The scheduler's cross-process signals go through the channels it is given, so a shared
deployment can carry them between cores (seams.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from core_cluster import MODEL, Keys

from gpucloud_server.config import CoreSettings
from gpucloud_server.scheduling.outbox import Assign, Cancel
from gpucloud_server.scheduling.registry import Gpu, WorkerInfo
from gpucloud_server.scheduling.scheduler import Scheduler
from gpucloud_server.scheduling.tasks import Delta, TaskSpec
from gpucloud_server.server import scheduler_config


class Recorded(asyncio.Queue[Any]):
    """An in-process channel that remembers what went through it."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[Any] = []

    def put_nowait(self, item: Any) -> None:
        self.sent.append(item)
        super().put_nowait(item)


async def test_assignments_cancellations_and_task_events_use_the_given_channels(
    core_settings: CoreSettings,
) -> None:
    made: list[Recorded] = []

    def channel() -> Recorded:
        made.append(Recorded())
        return made[-1]

    scheduler = Scheduler(
        scheduler_config(core_settings), lambda spec, record: None, channel=channel
    )
    gpu = Gpu("Test GPU", 1 << 30, 100.0, 10.0)
    worker = scheduler.connect(WorkerInfo("w1", "w1", "test", (gpu,), ((MODEL, "tests"),), 1, 1.0))
    key = await Keys().authenticate("key-a")
    task = scheduler.submit(TaskSpec(MODEL, 5, key, "req-1", None))
    assert worker.outbox is made[0] and task.events is made[1]
    scheduler.chunk(worker, task.ref, Delta(0, "hi"), tokens=1, prompt_tokens=3)
    scheduler.cancel(task)
    [assign, cancel] = made[0].sent
    assert isinstance(assign, Assign) and assign.task is task
    assert cancel == Cancel(task.ref)
    assert [type(event).__name__ for event in made[1].sent] == ["Started", "Delta"]
