"""A task's life in the core and the events its caller sees."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from enum import Enum

from gpucloud_server.errors import GpucloudError
from gpucloud_server.principal import KeyPrincipal, UsageRecord
from gpucloud_server.scheduling.seams import TaskChannel


class TaskState(Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"


class FailureKind(Enum):
    """Why a worker says a task failed, which decides what the scheduler does next."""

    INVALID_REQUEST = "invalid_request"  # the caller's fault: fail with the worker's words
    RETRYABLE = "retryable"  # the worker could not run it now: try elsewhere
    CANCELLED = "cancelled"  # the worker is stopping: try elsewhere
    INTERNAL = "internal"  # the worker broke: fail without details


@dataclass(frozen=True, slots=True)
class TaskRef:
    """One attempt at a task, as a worker names it; a stale attempt is fenced."""

    task_id: str
    attempt: int


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """What the caller asked for; `payload` travels to the worker untouched."""

    model: str
    priority: int
    key: KeyPrincipal
    request_id: str
    payload: object
    # Chained hashes of the prompt's leading blocks (scheduling.prefix.block_hashes),
    # for prefix-aware dispatch; empty: no preference.
    prefix: tuple[int, ...] = ()


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
    """Output of one choice. `tool_calls` and `logprobs` are the contract's pieces
    (ToolCallDelta, TokenLogprob), relayed untouched."""

    index: int
    text: str
    tool_calls: tuple[object, ...] = ()
    logprobs: tuple[object, ...] = ()


@dataclass(frozen=True, slots=True)
class Finished:
    reasons: tuple[tuple[int, int], ...]  # (choice index, FinishReason value)
    prompt_tokens: int
    completion_tokens: int
    time_to_first_token_ms: int
    cached_tokens: int = 0  # of prompt_tokens, served from the worker's prefix cache
    embeddings: tuple[object, ...] = ()  # an embedding task's vectors (contract Embedding)


@dataclass(frozen=True, slots=True)
class Failed:
    error: GpucloudError


Event = Queued | Started | Delta | Finished | Failed


@dataclass(eq=False, slots=True)
class Task:
    """A task as the scheduler tracks it. Attempts fence late output of lost workers."""

    id: str
    spec: TaskSpec
    enqueued_at: float  # monotonic clock
    created_at: float  # wall clock (unix seconds)
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
    def ref(self) -> TaskRef:
        """The current attempt."""
        return TaskRef(self.id, self.attempt)

    @property
    def streamed(self) -> bool:
        return self.first_token_at is not None

    @property
    def ttft_ms(self) -> int | None:
        """Milliseconds from arrival to the first token, once there was one."""
        if self.first_token_at is None:
            return None
        return int((self.first_token_at - self.enqueued_at) * 1000)

    def waited_ms(self, now: float) -> int:
        return int(((self.started_at or now) - self.enqueued_at) * 1000)

    def usage(
        self,
        outcome: str,
        error_code: str,
        *,
        prompt_tokens: int,
        completion_tokens: int,
        now: float,
        wall: float,
    ) -> UsageRecord:
        """The task's usage record as it ends at `now` (monotonic) / `wall` (unix time)."""
        key = self.spec.key
        return UsageRecord(
            task_id=self.id,
            key_id=key.key_id,
            user_id=key.user_id,
            model=self.model,
            worker_id=self.worker_id or "",
            gpu=self.gpu,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            queue_wait_ms=self.waited_ms(now),
            time_to_first_token_ms=self.ttft_ms,
            total_ms=int((now - self.enqueued_at) * 1000),
            outcome=outcome,
            error_code=error_code,
            created_at=self.created_at,
            finished_at=wall,
        )
