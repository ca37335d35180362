"""What the core tells a worker session: run this attempt of a task, or stop it."""

from __future__ import annotations

from dataclasses import dataclass

from gpucloud_server.scheduling.tasks import Task, TaskRef


@dataclass(frozen=True, slots=True)
class Assign:
    """Run this task; its output must name `attempt`."""

    task: Task
    attempt: int


@dataclass(frozen=True, slots=True)
class Cancel:
    """Stop this attempt."""

    ref: TaskRef


# What a worker session's outbox carries; None ends the session's writer.
WorkerMessage = Assign | Cancel
