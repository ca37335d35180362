"""The scheduler: admits tasks, dispatches them to workers, follows them to their end.

Plain async Python without grpc. The servicers feed it what callers and workers
say; it answers through each task's event queue and each worker's outbox.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from gpucloud_server.errors import (
    GpucloudError,
    Internal,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
)
from gpucloud_server.principal import UsageRecord
from gpucloud_server.scheduling.clock import Clock
from gpucloud_server.scheduling.hub import Hub, Version
from gpucloud_server.scheduling.outbox import Assign, Cancel
from gpucloud_server.scheduling.prefix import PrefixMemory
from gpucloud_server.scheduling.queue import FairQueue
from gpucloud_server.scheduling.registry import (
    GpuReading,
    Registry,
    Worker,
    WorkerInfo,
    WorkerState,
)
from gpucloud_server.scheduling.seams import ChannelFactory, TaskQueue
from gpucloud_server.scheduling.tasks import (
    Delta,
    Failed,
    FailureKind,
    Finished,
    Queued,
    Started,
    Task,
    TaskRef,
    TaskSpec,
    TaskState,
)

log = logging.getLogger("gpucloud.core")
KEY_SHARE = 4  # one key may fill at most 1/KEY_SHARE of the queue
RESTING_AFTER_FAILURES = 3  # consecutive give-backs that take a worker out until it beats


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    queue_capacity: int = 1000
    max_queue_wait_s: float = 300.0
    heartbeat_timeout_s: float = 15.0
    ageing_step_s: float = 10.0
    max_attempts: int = 3
    # Prefer the worker recently sent the same prompt prefix (see Registry.pick).
    prefix_aware_dispatch: bool = True


@dataclass(frozen=True, slots=True)
class TaskError:
    """A failed task, for live views."""

    task_id: str
    model: str
    code: str
    message: str
    time: float


WorkerEvent = Worker | TaskError


class Scheduler:
    def __init__(
        self,
        config: SchedulerConfig,
        on_end: Callable[[TaskSpec, UsageRecord], None],
        *,
        queue: TaskQueue[Task] | None = None,
        channel: ChannelFactory = asyncio.Queue,
        clock: Clock = Clock(),  # noqa: B008 - immutable
    ) -> None:
        self.config = config
        self.clock = clock
        prefixes = PrefixMemory() if config.prefix_aware_dispatch else None
        self.registry = Registry(channel=channel, prefixes=prefixes)
        self._channel = channel
        self.queue: TaskQueue[Task] = queue or FairQueue(
            config.queue_capacity, config.ageing_step_s
        )
        self.events: Hub[WorkerEvent] = Hub()
        self.recent_waits_ms: deque[int] = deque(maxlen=50)
        # (monotonic time, tokens, ok) of finished tasks, for rates on live views
        self.finished: deque[tuple[float, int, bool]] = deque(maxlen=10_000)
        self.fenced = 0
        self.idle = asyncio.Event()  # set while nothing is queued or running
        self.idle.set()
        # Moves whenever a task joins or leaves the queue, so queued callers re-read their
        # position then. Ageing reorders the queue with time alone; that shows at the next
        # change, which is when the order matters.
        self.queue_version = Version()
        self._on_end = on_end
        self._closing = False

    # ---- lifecycle -----------------------------------------------------------

    @property
    def closing(self) -> bool:
        """True once `close()` was called."""
        return self._closing

    def close(self) -> None:
        """Stops taking tasks: queued and running ones go on, new ones are refused."""
        self._closing = True

    def end_sessions(self) -> None:
        """Ends the writer of every live worker session; each session then ends, and what
        its worker still held is re-queued or failed as on any disconnect."""
        for worker in self.registry.live():
            worker.outbox.put_nowait(None)

    # ---- callers -------------------------------------------------------------

    def submit(self, spec: TaskSpec) -> Task:
        """Queues a task, or fails at once when it cannot be served."""
        if self._closing:
            raise Unavailable("the core is shutting down", retry_after_s=1.0)
        if not self.registry.serving(spec.model):
            raise self._no_worker(spec.model)
        if len(self.queue) >= self.queue.capacity:
            raise ResourceExhausted(
                "the queue is full; try again shortly",
                retry_after_s=1.0,
                code="queue_full",
            )
        # One key may hold a share of the queue, so its flood cannot lock other keys out.
        per_key = max(1, self.queue.capacity // KEY_SHARE)
        if self.queue.queued_for(spec.key.key_id) >= per_key:
            raise ResourceExhausted(
                f"this API key already has {per_key} requests waiting; try again shortly",
                retry_after_s=1.0,
                code="too_many_queued_requests",
            )
        task = Task(
            id=uuid.uuid4().hex,
            spec=spec,
            enqueued_at=self.clock.monotonic(),
            created_at=self.clock.wall(),
            events=self._channel(),
        )
        self.idle.clear()
        self.queue.push(task)
        self.queue_version.bump()
        self._dispatch()
        return task

    def position(self, task: Task) -> Queued | None:
        """Where a queued task stands now; None once it has left the queue."""
        now = self.clock.monotonic()
        position = self.queue.position(task.id, now)
        return None if position is None else Queued(position, task.waited_ms(now))

    def cancel(self, task: Task) -> None:
        """The caller went away: drop the task wherever it is and bill what was produced."""
        if task.state is TaskState.DONE:
            return
        if task.state is TaskState.RUNNING and task.worker_id is not None:
            worker = self.registry.get(task.worker_id)
            if worker is not None:
                worker.outbox.put_nowait(Cancel(task.ref))
        self._end(task, "cancelled", "CANCELLED")

    @property
    def running(self) -> int:
        return sum(len(w.active) for w in self.registry)

    # ---- workers -------------------------------------------------------------

    def connect(self, info: WorkerInfo) -> Worker:
        worker, replaced = self.registry.add(
            info, now=self.clock.monotonic(), wall=self.clock.wall()
        )
        if replaced is not None:
            self._lose(replaced, "the worker reconnected")
        self.events.publish(worker)
        self._dispatch()
        return worker

    def heartbeat(
        self,
        worker: Worker,
        readings: tuple[GpuReading, ...],
        healthy: bool,
        message: str,
    ) -> None:
        if not self._current(worker):
            return
        worker.readings = readings
        worker.beats += 1
        worker.last_heartbeat = self.clock.wall()
        worker.last_seen = self.clock.monotonic()
        worker.status_message = message
        if worker.state in (WorkerState.ONLINE, WorkerState.UNHEALTHY):
            worker.state = WorkerState.ONLINE if healthy else WorkerState.UNHEALTHY
        self.events.publish(worker)
        if healthy:
            self._dispatch()

    def chunk(
        self, worker: Worker, ref: TaskRef, delta: Delta, *, tokens: int, prompt_tokens: int = 0
    ) -> None:
        """Output of a running task: relayed to its caller, counted for billing."""
        task = self._owned(worker, ref)
        if task is None:
            return
        if task.first_token_at is None:
            task.first_token_at = self.clock.monotonic()
        task.relayed_tokens += tokens
        task.prompt_tokens = max(task.prompt_tokens, prompt_tokens)
        task.events.put_nowait(delta)

    def done(
        self,
        worker: Worker,
        ref: TaskRef,
        reasons: tuple[tuple[int, int], ...],
        *,
        prompt_tokens: int,
        completion_tokens: int,
        cached_tokens: int = 0,
        embeddings: tuple[object, ...] = (),
    ) -> None:
        """A task completed; `reasons` are (choice index, FinishReason value);
        `cached_tokens` of the prompt came from the worker's prefix cache; `embeddings`
        are an embedding task's vectors."""
        task = self._owned(worker, ref)
        if task is None:
            return
        # Backends that know the real count (an upstream's usage) report it; otherwise
        # the core bills what it relayed.
        completion = completion_tokens or task.relayed_tokens
        cached = max(0, min(cached_tokens, prompt_tokens))  # a worker's word, bounded
        task.events.put_nowait(
            Finished(reasons, prompt_tokens, completion, task.ttft_ms or 0, cached, embeddings)
        )
        worker.tasks_completed += 1
        worker.failures_in_a_row = 0
        self._end(task, "ok", "", prompt_tokens=prompt_tokens, completion_tokens=completion)

    def failed(
        self,
        worker: Worker,
        ref: TaskRef,
        kind: FailureKind,
        message: str,
        *,
        code: str = "",
        param: str = "",
    ) -> None:
        """A task failed on its worker; `code` / `param` pass an invalid request's
        OpenAI error code and field on to the caller."""
        task = self._owned(worker, ref)
        if task is None:
            return
        if kind is FailureKind.INVALID_REQUEST:
            self._fail(task, InvalidArgument(message, code=code, param=param))
        elif kind in (FailureKind.RETRYABLE, FailureKind.CANCELLED):
            self._give_back(task, worker, message)
        else:
            log.warning("task %s failed on worker %s: %s", task.id, worker.id, message)
            self._fail(task, Internal("the worker failed while running the task"))
        self._dispatch()

    def drain(self, worker: Worker) -> None:
        if self._current(worker) and worker.state is not WorkerState.OFFLINE:
            worker.state = WorkerState.DRAINING
            self.events.publish(worker)

    def disconnect(self, worker: Worker) -> None:
        """The worker's stream ended."""
        if self._current(worker) and worker.state is not WorkerState.OFFLINE:
            self._lose(worker, "the worker disconnected")

    def reap(self) -> None:
        """Periodic duty: expire silent workers and tasks that waited too long."""
        now = self.clock.monotonic()
        for worker in self.registry.expired(now, self.config.heartbeat_timeout_s):
            self._lose(worker, "the worker missed its heartbeats")
        for task in list(self.queue.tasks()):
            if now - task.enqueued_at > self.config.max_queue_wait_s:
                self._fail(task, Unavailable("no worker became free in time", retry_after_s=5.0))
        self.registry.prune(now)
        self.queue.forget_keys_idle_since(now - 3600)

    # ---- internals -----------------------------------------------------------

    def _dispatch(self) -> None:
        now = self.clock.monotonic()
        skipped: list[Task] = []
        assigned = False
        while self.queue:
            models = self.registry.models_with_capacity()
            task = self.queue.pop(models, now) if models else None
            if task is None:
                break
            worker = self.registry.pick(task.model, task.failed_on, task.spec.prefix)
            if worker is None:
                skipped.append(task)  # only workers that just gave it back are free
                continue
            self._assign(task, worker, now)
            assigned = True
        for task in reversed(skipped):
            self.queue.push(task, front=True)
        if assigned:
            self.queue_version.bump()

    def _assign(self, task: Task, worker: Worker, now: float) -> None:
        task.attempt += 1
        task.state = TaskState.RUNNING
        task.worker_id = worker.id
        task.gpu = worker.info.gpus[0].name if worker.info.gpus else ""
        first = task.started_at is None
        task.started_at = now
        worker.active[task.id] = task
        self.registry.sent(worker, task.spec.prefix)
        worker.outbox.put_nowait(Assign(task, task.attempt))
        if first:
            wait_ms = task.waited_ms(now)
            self.recent_waits_ms.append(wait_ms)
            task.events.put_nowait(
                Started(task.id, task.model, worker.id, wait_ms, int(task.created_at))
            )

    def _lose(self, worker: Worker, why: str) -> None:
        """Takes a worker out: re-queue what it had not started streaming, fail the rest."""
        worker.state = WorkerState.OFFLINE
        worker.last_seen = self.clock.monotonic()
        worker.outbox.put_nowait(None)  # ends the session's writer if it is still open
        self.registry.forget_prefixes(worker)
        for task in list(worker.active.values()):
            self._retry_or_fail(task, worker, why)
        for task in list(self.queue.tasks()):
            if not self.registry.serving(task.model):
                self._fail(task, self._no_worker(task.model))
        self.events.publish(worker)
        self._dispatch()

    def _give_back(self, task: Task, worker: Worker, message: str) -> None:
        """The worker could not run the task (e.g. its upstream is down, or it is stopping):
        the task goes elsewhere, or back to this worker after its next heartbeat."""
        log.warning("worker %s gave a task back: %s", worker.id, message)
        task.failed_on[worker.id] = worker.beats
        worker.failures_in_a_row += 1
        # One request that a backend refuses must not bench the fleet; a worker that
        # keeps failing rests until a heartbeat says it is healthy.
        resting = worker.failures_in_a_row >= RESTING_AFTER_FAILURES
        if resting and worker.state is WorkerState.ONLINE:
            worker.state = WorkerState.UNHEALTHY
            worker.status_message = message
            self.events.publish(worker)
        self._retry_or_fail(task, worker, "the worker could not run the task")

    def _retry_or_fail(self, task: Task, worker: Worker, why: str) -> None:
        worker.active.pop(task.id, None)
        if task.streamed or task.attempt >= self.config.max_attempts:
            self._fail(task, Unavailable(f"{why} while running the task"))
            return
        task.state = TaskState.QUEUED
        task.worker_id = None
        if not self.registry.serving(task.model):
            self._fail(task, self._no_worker(task.model))
            return
        self.queue.push(task, front=True)
        self.queue_version.bump()

    def _fail(self, task: Task, error: GpucloudError) -> None:
        task.events.put_nowait(Failed(error))
        self.events.publish(
            TaskError(task.id, task.model, error.status, error.message, self.clock.wall())
        )
        self._end(task, "error", error.status)

    def _end(
        self,
        task: Task,
        outcome: str,
        error_code: str,
        *,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
    ) -> None:
        if task.state is TaskState.DONE:
            return
        if self.queue.remove(task.id) is not None:
            self.queue_version.bump()
        worker = self.registry.get(task.worker_id) if task.worker_id else None
        if worker is not None and worker.active.get(task.id) is task:
            del worker.active[task.id]
        task.state = TaskState.DONE
        if not self.queue and not self.running:
            self.idle.set()
        now = self.clock.monotonic()
        tokens = task.relayed_tokens if completion_tokens is None else completion_tokens
        if prompt_tokens is None:
            prompt_tokens = task.prompt_tokens if task.streamed else 0
        self.finished.append((now, prompt_tokens + tokens, outcome != "error"))
        record = task.usage(
            outcome,
            error_code,
            prompt_tokens=prompt_tokens,
            completion_tokens=tokens,
            now=now,
            wall=self.clock.wall(),
        )
        self._on_end(task.spec, record)
        if worker is not None:
            self._dispatch()

    def _owned(self, worker: Worker, ref: TaskRef) -> Task | None:
        """The task if this worker session still owns this attempt; late output is fenced."""
        task = worker.active.get(ref.task_id) if self._current(worker) else None
        if task is None or task.attempt != ref.attempt or task.state is not TaskState.RUNNING:
            self.fenced += 1
            return None
        return task

    def _current(self, worker: Worker) -> bool:
        return self.registry.get(worker.id) is worker

    def _no_worker(self, model: str) -> GpucloudError:
        if model in self.registry.model_first_seen:
            return Unavailable(
                f"no worker serving model '{model}' is online",
                retry_after_s=5.0,
                code="model_unavailable",
                param="model",
            )
        return NotFound(
            f"the model '{model}' does not exist",
            code="model_not_found",
            param="model",
        )
