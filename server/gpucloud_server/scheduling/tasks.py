"""A task's life in the core and the events its caller sees."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from enum import Enum

from gpucloud_server.errors import GpucloudError
from gpucloud_server.principal import KeyPrincipal
from gpucloud_server.scheduling.seams import TaskChannel


class TaskState(Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """What the caller asked for; `payload` travels to the worker untouched."""

    model: str
    priority: int
    key: KeyPrincipal
    request_id: str
    payload: object


@dataclass(frozen=True, slots=True)
class Queued:
    position: int
    waited_ms: int


@dataclass(frozen=True, slots=True)
class Started:
    task_id: str
    model: str
    worker_id: str
    queue_wait_ms: int
    created: int


@dataclass(frozen=True, slots=True)
class Delta:
    index: int
    text: str


@dataclass(frozen=True, slots=True)
class Finished:
    reasons: tuple[tuple[int, int], ...]  # (choice index, FinishReason value)
    prompt_tokens: int
    completion_tokens: int
    time_to_first_token_ms: int


@dataclass(frozen=True, slots=True)
class Failed:
    error: GpucloudError


Event = Queued | Started | Delta | Finished | Failed


@dataclass(eq=False, slots=True)
class Task:
    """A task as the scheduler tracks it. Attempts fence late output of lost workers."""

    id: str
    spec: TaskSpec
    enqueued_at: float = field(default_factory=time.monotonic)
    created_at: float = field(default_factory=time.time)
    state: TaskState = TaskState.QUEUED
    attempt: int = 0
    worker_id: str | None = None
    gpu: str = ""
    started_at: float | None = None
    first_token_at: float | None = None
    relayed_tokens: int = 0
    prompt_tokens: int = 0  # reported with the first chunk
    # Workers that gave it back -> their heartbeat count then: the task may go back to
    # such a worker only after its next heartbeat.
    failed_on: dict[str, int] = field(default_factory=dict)
    events: TaskChannel[Event] = field(default_factory=asyncio.Queue)

    @property
    def model(self) -> str:
        return self.spec.model

    @property
    def priority(self) -> int:
        return self.spec.priority

    @property
    def key_id(self) -> str:
        return self.spec.key.key_id

    @property
    def streamed(self) -> bool:
        return self.first_token_at is not None

    def waited_ms(self, now: float) -> int:
        return int(((self.started_at or now) - self.enqueued_at) * 1000)
