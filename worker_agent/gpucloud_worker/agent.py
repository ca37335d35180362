"""The worker agent: keeps a session with the core, runs assigned tasks on a backend.

One reader loop handles what the core says; one writer drains the outbox; each
task runs in its own asyncio task whose `finally` always reports back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import TYPE_CHECKING

import grpc

from gpucloud.v1 import scheduler_pb2, scheduler_pb2_grpc, worker_pb2
from gpucloud_common.channel import open_channel
from gpucloud_worker import tasks
from gpucloud_worker.backend import (
    Backend,
    BackendError,
    Chunk,
    ErrorKind,
    Finish,
    Health,
    WorkerDescription,
)
from gpucloud_worker.config import WorkerSettings

if TYPE_CHECKING:  # the async stub exists only in the generated type stubs
    from gpucloud.v1.scheduler_pb2_grpc import SchedulerServiceAsyncStub

log = logging.getLogger("gpucloud.worker")

ERROR_KINDS = {
    ErrorKind.INVALID_REQUEST: worker_pb2.TASK_ERROR_KIND_INVALID_REQUEST,
    ErrorKind.RETRYABLE: worker_pb2.TASK_ERROR_KIND_RETRYABLE,
    ErrorKind.INTERNAL: worker_pb2.TASK_ERROR_KIND_INTERNAL,
}
Outgoing = scheduler_pb2.WorkerSessionRequest
MIN_HEARTBEAT_S = 0.05


class SessionClosed(Exception):
    """The core ended the session."""


class WorkerAgent:
    def __init__(self, settings: WorkerSettings, backend: Backend) -> None:
        self.settings = settings
        self.backend = backend
        self.running: dict[str, asyncio.Task[None]] = {}
        self.sessions = 0  # sessions opened, for tests and logs
        self._draining = asyncio.Event()
        self._outbox: asyncio.Queue[Outgoing | None] = asyncio.Queue()
        self._description: WorkerDescription | None = None
        self._drain_timer: asyncio.TimerHandle | None = None
        self._beat: asyncio.Task[None] | None = None

    async def run(self) -> None:
        """Connects and reconnects with backoff until drained."""
        self._description = await self.backend.start()
        delay = self.settings.reconnect_min_s
        try:
            while not (self._draining.is_set() and not self.running):
                async with open_channel(
                    self.settings.core_address, tls=self.settings.tls, tls_ca=self.settings.tls_ca
                ) as channel:
                    try:
                        await self._session(scheduler_pb2_grpc.SchedulerServiceStub(channel))
                        delay = self.settings.reconnect_min_s
                    except (grpc.aio.AioRpcError, SessionClosed) as exc:
                        log.warning("session with the core ended: %s", _describe(exc))
                if self._draining.is_set() and not self.running:
                    break
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, self.settings.reconnect_max_s)
        finally:
            if self._drain_timer is not None:
                self._drain_timer.cancel()
            await self._cancel_all()
            await self.backend.close()

    def drain(self) -> None:
        """Takes no new tasks; the session ends once running tasks are done, or after
        `drain_timeout_s`. A second call stops the running tasks at once."""
        if self._draining.is_set():
            self._give_up()
            return
        self._draining.set()
        self._send(Outgoing(drain=worker_pb2.DrainWorker()))
        self._close_if_drained()
        loop = asyncio.get_running_loop()
        self._drain_timer = loop.call_later(self.settings.drain_timeout_s, self._give_up)

    def _give_up(self) -> None:
        """Stops what still runs; the core re-queues tasks that had not streamed yet."""
        if self.running:
            log.warning("drain: stopping %d unfinished task(s)", len(self.running))
        for task in list(self.running.values()):
            task.cancel()

    async def _session(self, stub: SchedulerServiceAsyncStub) -> None:
        self._outbox = asyncio.Queue()
        self._send(Outgoing(register=self._register()))
        if self._draining.is_set():
            self._send(Outgoing(drain=worker_pb2.DrainWorker()))
        call = stub.WorkerSession(self._writer())
        self.sessions += 1
        try:
            async for message in call:
                self._handle(message)
        finally:
            if self._beat is not None:
                self._beat.cancel()
                self._beat = None
            self._outbox.put_nowait(None)
            call.cancel()
            # Whatever ran belongs to a session the core has written off.
            await self._cancel_all()

    async def _writer(self) -> AsyncIterator[Outgoing]:
        outbox = self._outbox
        held: Outgoing | None = None
        while True:
            message = held if held is not None else await outbox.get()
            held = None
            if message is None:
                return
            if message.HasField("chunk"):
                # Chunks of one choice already queued behind this one travel as one message.
                while not outbox.empty():
                    following = outbox.get_nowait()
                    if following is None or not _joins(message.chunk, following):
                        held = following if following is not None else _CLOSE
                        break
                    message.chunk.text += following.chunk.text
                    message.chunk.tokens += following.chunk.tokens
                    message.chunk.logprobs.extend(following.chunk.logprobs)
            yield message
            if held is _CLOSE:
                return

    def _send(self, message: Outgoing) -> None:
        self._outbox.put_nowait(message)

    def _register(self) -> worker_pb2.RegisterWorker:
        d = self._description
        assert d is not None
        return worker_pb2.RegisterWorker(
            join_token=self.settings.join_token,
            worker_id=self.settings.worker_id,
            name=self.settings.name,
            backend=d.backend,
            gpus=[
                worker_pb2.GpuSpec(
                    name=g.name,
                    memory_total_bytes=g.memory_total_bytes,
                    memory_bandwidth_gbps=g.memory_bandwidth_gbps,
                    bf16_tflops=g.bf16_tflops,
                )
                for g in d.gpus
            ],
            models=[
                worker_pb2.WorkerModel(
                    id=m.id,
                    owned_by=m.owned_by,
                    capabilities=worker_pb2.ModelCapabilities(**asdict(m.capabilities)),
                )
                for m in d.models
            ],
            slots=d.slots,
            speed=d.speed,
        )

    async def _heartbeat(self, interval_s: float) -> None:
        while True:
            health = await self.backend.health()
            self._send(Outgoing(heartbeat=_heartbeat(health, len(self.running))))
            await asyncio.sleep(interval_s)

    def _start_heartbeat(self, registered: worker_pb2.WorkerRegistered) -> None:
        """Beats at our own interval, or at the core's when it expects beats more often."""
        asked_s = (
            registered.heartbeat_interval_ms / 1000
            if registered.heartbeat_interval_ms
            else float(registered.heartbeat_interval_seconds)
        )
        interval_s = min(self.settings.heartbeat_interval_s, asked_s or math.inf)
        interval_s = max(interval_s, MIN_HEARTBEAT_S)  # whatever a core asks
        if self._beat is not None:
            self._beat.cancel()
        self._beat = asyncio.create_task(self._heartbeat(interval_s))

    def _handle(self, message: scheduler_pb2.WorkerSessionResponse) -> None:
        kind = message.WhichOneof("payload")
        if kind == "assign":
            a = message.assign
            if a.task_id in self.running:
                return
            self.running[a.task_id] = asyncio.create_task(self._run(a))
        elif kind == "cancel":
            task = self.running.get(message.cancel.task_id)
            if task is not None:
                task.cancel()
        elif kind == "registered":
            log.info("registered with the core as %s", message.registered.worker_id)
            self._start_heartbeat(message.registered)

    async def _run(self, assignment: worker_pb2.TaskAssignment) -> None:
        task_id, attempt = assignment.task_id, assignment.attempt
        try:
            if assignment.embedding_inputs:
                embeddings = await self.backend.embed(tasks.embedding_request(assignment))
                self._send(Outgoing(done=tasks.embedded(task_id, attempt, embeddings)))
                return
            request = tasks.generation_request(assignment)
            async with contextlib.aclosing(self.backend.generate(request)) as stream:
                async for event in stream:
                    if isinstance(event, Chunk):
                        self._send(Outgoing(chunk=tasks.chunk(task_id, attempt, event)))
                    elif isinstance(event, Finish):
                        self._send(Outgoing(done=tasks.done(task_id, attempt, event)))
        except BackendError as error:
            self._send(Outgoing(failed=worker_pb2.TaskFailed(
                task_id=task_id, attempt=attempt,
                kind=ERROR_KINDS[error.kind], message=error.message,
                code=error.details.get("code", ""), param=error.details.get("param", ""),
            )))  # fmt: skip
        except asyncio.CancelledError:
            pass  # the core cancelled it, or the session ended
        except Exception:
            log.exception("task %s failed in the backend", task_id)
            self._send(Outgoing(failed=worker_pb2.TaskFailed(
                task_id=task_id, attempt=attempt,
                kind=worker_pb2.TASK_ERROR_KIND_INTERNAL, message="the backend failed",
            )))  # fmt: skip
        finally:
            self.running.pop(task_id, None)
            self._close_if_drained()

    def _close_if_drained(self) -> None:
        if self._draining.is_set() and not self.running:
            self._outbox.put_nowait(None)  # half-close: the core ends the session

    async def _cancel_all(self) -> None:
        tasks = list(self.running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


_CLOSE = Outgoing()  # stands for the end of the outbox once a None was taken early


def _joins(chunk: worker_pb2.TaskChunk, following: Outgoing) -> bool:
    """Whether `following` continues `chunk`'s text (tool-call pieces never join)."""
    if not following.HasField("chunk") or chunk.tool_calls:
        return False
    nxt = following.chunk
    if nxt.tool_calls:
        return False
    return (nxt.task_id, nxt.attempt, nxt.index) == (chunk.task_id, chunk.attempt, chunk.index)


def _heartbeat(health: Health, active: int) -> worker_pb2.Heartbeat:
    return worker_pb2.Heartbeat(
        gpus=[
            worker_pb2.GpuMetrics(
                index=g.index,
                utilization_percent=g.utilization_percent,
                memory_used_bytes=g.memory_used_bytes,
                temperature_celsius=g.temperature_celsius,
                power_watts=g.power_watts,
            )
            for g in health.gpus
        ],
        active_tasks=active,
        healthy=health.healthy,
        status_message=health.message,
    )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return str(exc) or type(exc).__name__
