"""The scheduler in process against a hand-moved clock: expiry, reaping, ageing, shutdown.

No network and no waiting: the clock only moves when a test says so, so deadlines are
checked on both sides of their boundary.
"""

from __future__ import annotations

from typing import Any

import pytest

from gpucloud_server.errors import Unavailable
from gpucloud_server.principal import KeyPrincipal, UsageRecord
from gpucloud_server.scheduling.clock import Clock
from gpucloud_server.scheduling.outbox import Assign
from gpucloud_server.scheduling.registry import Gpu, Worker, WorkerInfo, WorkerState
from gpucloud_server.scheduling.scheduler import Scheduler, SchedulerConfig
from gpucloud_server.scheduling.tasks import (
    Delta,
    Event,
    Failed,
    Queued,
    Started,
    Task,
    TaskRef,
    TaskSpec,
    TaskState,
)

MODEL = "test-model"
UNIX_EPOCH_OFFSET = 1_700_000_000.0
CONFIG = SchedulerConfig(
    queue_capacity=100,
    max_queue_wait_s=300.0,
    heartbeat_timeout_s=15.0,
    ageing_step_s=10.0,
    max_attempts=3,
)


class FakeClock:
    """Time that moves only when told to; the wall clock keeps a fixed offset from it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def clock(self) -> Clock:
        return Clock(monotonic=lambda: self.now, wall=lambda: UNIX_EPOCH_OFFSET + self.now)


class Core:
    """A scheduler on a fake clock, with helpers to connect workers and submit tasks."""

    def __init__(self, config: SchedulerConfig = CONFIG) -> None:
        self.time = FakeClock()
        self.records: list[UsageRecord] = []
        self.scheduler = Scheduler(
            config, lambda spec, record: self.records.append(record), clock=self.time.clock()
        )

    def connect(self, worker_id: str, slots: int = 1) -> Worker:
        gpu = Gpu("Test GPU", 1 << 30, 100.0, 10.0)
        info = WorkerInfo(worker_id, worker_id, "test", (gpu,), ((MODEL, "tests"),), slots, 1.0)
        return self.scheduler.connect(info)

    def submit(self, key: str = "a", priority: int = 5) -> Task:
        principal = KeyPrincipal(key, "user-1", key, priority, frozenset(), 0, 0)
        return self.scheduler.submit(TaskSpec(MODEL, priority, principal, f"req-{key}", None))

    def finish(self, worker: Worker, task: Task) -> None:
        self.scheduler.done(worker, task.ref, ((0, 1),), prompt_tokens=1, completion_tokens=1)


def events(task: Task) -> list[Event]:
    out = []
    while not task.events.empty():
        out.append(task.events.get_nowait())
    return out


def sent(worker: Worker) -> list[Any]:
    out = []
    while not worker.outbox.empty():
        out.append(worker.outbox.get_nowait())
    return out


def test_a_heartbeat_pushes_the_deadline_and_silence_past_it_takes_the_worker_out() -> None:
    core = Core()
    worker = core.connect("w1")
    core.time.advance(10.0)
    core.scheduler.heartbeat(worker, (), True, "")
    assert worker.last_heartbeat == UNIX_EPOCH_OFFSET + core.time.now
    core.time.advance(10.0)  # 20 s after connecting: alive only thanks to the beat
    core.scheduler.reap()
    assert worker.state is WorkerState.ONLINE
    core.time.advance(5.0)  # exactly the timeout since the beat: not yet missed
    core.scheduler.reap()
    assert worker.state is WorkerState.ONLINE
    core.time.advance(0.25)
    core.scheduler.reap()
    assert worker.state is WorkerState.OFFLINE
    assert sent(worker) == [None]  # the session's writer is told to end


def test_reaping_a_silent_worker_moves_its_unstarted_task_to_another() -> None:
    core = Core()
    silent = core.connect("silent")
    task = core.submit()
    [assign] = sent(silent)
    assert isinstance(assign, Assign) and assign.attempt == 1
    core.time.advance(5.0)
    healthy = core.connect("healthy")  # busy-free, but the task already runs on `silent`
    core.time.advance(10.25)  # silent 15.25 s, healthy 10.25 s
    core.scheduler.reap()
    assert silent.state is WorkerState.OFFLINE and healthy.state is WorkerState.ONLINE
    [moved] = sent(healthy)
    assert isinstance(moved, Assign) and moved.task is task and moved.attempt == 2
    # The caller heard one start and no failure; late output of the first attempt is fenced.
    assert [type(e) for e in events(task)] == [Started]
    core.scheduler.chunk(silent, TaskRef(task.id, 1), Delta(0, "stale"), tokens=1)
    assert core.scheduler.fenced == 1 and events(task) == []
    assert core.records == []


def test_reaping_the_only_worker_of_a_model_fails_its_task() -> None:
    core = Core()
    silent = core.connect("silent")
    task = core.submit()
    core.time.advance(15.25)
    core.scheduler.reap()
    started, failed = events(task)
    assert isinstance(started, Started) and isinstance(failed, Failed)
    assert isinstance(failed.error, Unavailable) and failed.error.code == "model_unavailable"
    assert task.state is TaskState.DONE and not silent.active
    [record] = core.records
    assert (record.outcome, record.error_code, record.total_ms) == ("error", "UNAVAILABLE", 15250)


def test_a_streamed_task_on_a_silent_worker_fails_rather_than_runs_twice() -> None:
    core = Core()
    silent = core.connect("silent")
    task = core.submit()
    core.scheduler.chunk(silent, task.ref, Delta(0, "partial"), tokens=1, prompt_tokens=4)
    spare = core.connect("spare")
    core.time.advance(15.25)
    core.scheduler.heartbeat(spare, (), True, "")
    core.scheduler.reap()
    assert isinstance(events(task)[-1], Failed)
    assert sent(spare) == []
    [record] = core.records
    assert (record.prompt_tokens, record.completion_tokens, record.time_to_first_token_ms) == (
        4,
        1,
        0,
    )


def test_a_task_that_waits_past_the_maximum_fails_unavailable() -> None:
    core = Core()
    worker = core.connect("w1")
    running = core.submit()
    waiting = core.submit(key="b")
    core.time.advance(300.0)  # exactly the maximum wait: it may still run
    core.scheduler.heartbeat(worker, (), True, "")
    core.scheduler.reap()
    assert waiting.state is TaskState.QUEUED
    core.time.advance(0.25)
    core.scheduler.heartbeat(worker, (), True, "")
    core.scheduler.reap()
    [failed] = events(waiting)
    assert isinstance(failed, Failed) and isinstance(failed.error, Unavailable)
    assert failed.error.retry_after_s == 5.0
    assert len(core.scheduler.queue) == 0 and running.state is TaskState.RUNNING
    [record] = core.records
    assert record.queue_wait_ms == 300_250
    assert record.created_at == UNIX_EPOCH_OFFSET + 1000.0
    assert record.finished_at == UNIX_EPOCH_OFFSET + core.time.now


@pytest.mark.parametrize(
    ("freed_after_s", "runs_first", "low_position"),
    [(39.0, "high", 1), (40.0, "low", 0)],
    ids=["three-steps", "four-steps"],
)
def test_a_low_priority_task_overtakes_once_aged_to_the_same_priority(
    freed_after_s: float, runs_first: str, low_position: int
) -> None:
    core = Core()
    worker = core.connect("w1")
    blocker = core.submit(key="x")
    low = core.submit(key="l", priority=1)
    core.time.advance(39.0)
    high = core.submit(key="h", priority=5)
    # Priority 1 gains a level every 10 s: 4 levels at 40 s ties it with priority 5,
    # and on a tie the longer-starved task goes first.
    core.time.advance(freed_after_s - 39.0)
    assert core.scheduler.position(low) == Queued(low_position, int(freed_after_s * 1000))
    sent(worker)
    core.finish(worker, blocker)
    [assign] = sent(worker)
    assert isinstance(assign, Assign)
    assert assign.task is {"low": low, "high": high}[runs_first]
    if runs_first == "low":
        [started] = events(low)
        assert isinstance(started, Started) and started.queue_wait_ms == 40_000


def test_the_queue_version_moves_when_a_task_joins_or_leaves() -> None:
    core = Core()
    worker = core.connect("w1")
    versions = [core.scheduler.queue_version.value]
    running = core.submit()  # joins and leaves for the worker at once
    versions.append(core.scheduler.queue_version.value)
    waiting = core.submit(key="b")
    versions.append(core.scheduler.queue_version.value)
    core.scheduler.heartbeat(worker, (), True, "")  # nothing moves
    versions.append(core.scheduler.queue_version.value)
    core.finish(worker, running)  # `waiting` leaves for the worker
    versions.append(core.scheduler.queue_version.value)
    assert waiting.state is TaskState.RUNNING
    assert versions[0] < versions[1] < versions[2] == versions[3] < versions[4]


def test_a_closed_scheduler_refuses_new_tasks_and_ends_sessions_when_told() -> None:
    core = Core()
    worker = core.connect("w1")
    gone = core.connect("gone")
    core.time.advance(15.25)
    core.scheduler.heartbeat(worker, (), True, "")
    core.scheduler.reap()  # `gone` is offline: its session is already over
    running = core.submit()
    sent(worker)
    sent(gone)
    core.scheduler.close()
    with pytest.raises(Unavailable):
        core.submit(key="b")
    assert core.scheduler.closing and running.state is TaskState.RUNNING
    core.finish(worker, running)  # running tasks still finish
    assert core.scheduler.idle.is_set()
    core.scheduler.end_sessions()
    assert sent(worker) == [None] and sent(gone) == []
