"""A real core on port 0 with an in-test identity, and workers with scriptable backends.

A module of its own (not conftest.py) so that test modules import it by a unique name."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
from waiting import until

from gpucloud.v1 import (
    chat_pb2,
    scheduler_pb2,
    scheduler_pb2_grpc,
    worker_pb2,
)
from gpucloud_server.errors import Unauthenticated
from gpucloud_server.identity.metrics import MetricsReport, Percentiles
from gpucloud_server.principal import KeyPrincipal, LimitDecision, UsageRecord, UserPrincipal
from gpucloud_server.server import CoreServer
from gpucloud_worker.agent import WorkerAgent
from gpucloud_worker.backend import (
    BackendError,
    Chunk,
    ErrorKind,
    Finish,
    FinishReason,
    GenerationRequest,
    GpuSpec,
    Health,
    ModelOffer,
    WorkerDescription,
)
from gpucloud_worker.config import WorkerSettings

JOIN = "test-join-token-01"
OPS_TOKEN = "test-ops-token"
MODEL = "test-model"
SIM_MODEL = "meta-llama/Llama-3.1-8B-Instruct"  # one the simulated GPUs serve


class Keys:
    """API keys for tests: `key-<id>` or `key-<id>-p<priority>`."""

    async def authenticate(self, secret: str) -> KeyPrincipal:
        if not secret.startswith("key-"):
            raise Unauthenticated("invalid API key")
        name, _, prio = secret[4:].partition("-p")
        return KeyPrincipal(name, "user-1", name, int(prio or 5), frozenset(), 0, 0)


class Unlimited:
    async def admit(self, key: KeyPrincipal) -> LimitDecision:
        return LimitDecision(None, None)

    async def peek(self, key: KeyPrincipal) -> LimitDecision:
        return LimitDecision(None, None)

    async def charge_tokens(self, key: KeyPrincipal, tokens: int) -> None:
        return None


@dataclass
class Usage:
    records: list[UsageRecord] = field(default_factory=list)

    def record(self, record: UsageRecord) -> None:
        self.records.append(record)


class Sessions:
    def verify(self, token: str) -> UserPrincipal:
        if token != "admin-jwt":
            raise Unauthenticated("bad token")
        return UserPrincipal("user-1", "admin@test", True)


class NoReports:
    async def report(self, user: UserPrincipal, window: int, bucket: int) -> MetricsReport:
        empty = Percentiles(0.0, 0.0, 0.0)
        return MetricsReport((), (), (), empty, empty)


@dataclass
class TestIdentity:
    keys: Keys = field(default_factory=Keys)
    sessions: Sessions = field(default_factory=Sessions)
    limiter: Unlimited = field(default_factory=Unlimited)
    usage: Usage = field(default_factory=Usage)
    reports: NoReports = field(default_factory=NoReports)
    accounts: None = None

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


class ScriptedBackend:
    """A backend whose tasks emit `tokens` tokens, one every `interval` seconds, and which
    records what it was asked and when generations were closed."""

    def __init__(
        self,
        models: tuple[str, ...] = (MODEL,),
        slots: int = 2,
        speed: float = 1.0,
        tokens: int = 3,
        interval: float = 0.0,
    ) -> None:
        self.models, self.slots, self.speed = models, slots, speed
        self.tokens, self.interval = tokens, interval
        self.started: list[str] = []
        self.closed: dict[str, float] = {}
        self.gate: asyncio.Event | None = None  # when set, tasks wait for it before the 1st token

    async def start(self) -> WorkerDescription:
        return WorkerDescription(
            backend="scripted",
            gpus=(GpuSpec("Test GPU", 1 << 30),),
            models=tuple(ModelOffer(m, "tests") for m in self.models),
            slots=self.slots,
            speed=self.speed,
        )

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[Chunk | Finish, None]:
        self.started.append(request.task_id)
        try:
            if self.gate is not None:
                await self.gate.wait()
            for i in range(self.tokens):
                if self.interval:
                    await asyncio.sleep(self.interval)
                yield Chunk(0, f"t{i} ", 1, prompt_tokens=5 if i == 0 else 0)
            yield Finish((FinishReason.STOP,), 5, self.tokens)
        finally:
            self.closed[request.task_id] = asyncio.get_running_loop().time()

    async def health(self) -> Health:
        return Health(())

    async def close(self) -> None:
        return None


class Refuses(ScriptedBackend):
    """A backend that refuses every task as an invalid request."""

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[Chunk | Finish, None]:
        raise BackendError(ErrorKind.INVALID_REQUEST, "This prompt is too long.")
        yield  # an async generator that never yields


@dataclass
class Cluster:
    core: CoreServer
    identity: Any  # TestIdentity, or the real Identity
    channel: grpc.aio.Channel
    agents: list[tuple[WorkerAgent, asyncio.Task[None]]] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.core.port}"

    @property
    def stub(self) -> scheduler_pb2_grpc.SchedulerServiceStub:
        return scheduler_pb2_grpc.SchedulerServiceStub(self.channel)

    async def add_worker(
        self, backend: Any, worker_id: str, *, wait: bool = True, heartbeat_s: float = 0.2
    ) -> WorkerAgent:
        settings = WorkerSettings(
            self.address, JOIN, worker_id, worker_id, heartbeat_interval_s=heartbeat_s,
            reconnect_min_s=0.05, reconnect_max_s=0.2,
        )  # fmt: skip
        agent = WorkerAgent(settings, backend)
        self.agents.append((agent, asyncio.create_task(agent.run())))
        if wait:
            await until(lambda: self.worker(worker_id) is not None)
        return agent

    def worker(self, worker_id: str) -> Any:
        w = self.core.scheduler.registry.get(worker_id)
        return w if w is not None and w.state.value != "offline" else None

    def chat(
        self, key: str = "key-a", model: str = MODEL, *, collect: bool = False, **sampling: Any
    ) -> grpc.aio.UnaryStreamCall:
        request = scheduler_pb2.CreateChatCompletionRequest(
            model=model,
            messages=[chat_pb2.ChatMessage(role="user", content="hello")],
            sampling=chat_pb2.SamplingParams(**sampling),
            collect=collect,
        )
        return self.stub.CreateChatCompletion(
            request, metadata=(("authorization", f"Bearer {key}"),)
        )


class RawWorker:
    """A hand-driven worker session, to misbehave in ways the real agent never does."""

    def __init__(
        self, cluster: Cluster, worker_id: str, *, beats: bool = True, model: str = MODEL
    ) -> None:
        self.beats = beats  # heartbeat every 0.1 s unless told to stay silent
        self.outbox: asyncio.Queue[scheduler_pb2.WorkerSessionRequest | None] = asyncio.Queue()
        self.outbox.put_nowait(
            scheduler_pb2.WorkerSessionRequest(
                register=worker_pb2.RegisterWorker(
                    join_token=JOIN, worker_id=worker_id, name=worker_id, backend="raw",
                    models=[worker_pb2.WorkerModel(id=model)], slots=1, speed=1000,
                )
            )
        )  # fmt: skip
        self.call = cluster.stub.WorkerSession(self._requests())

    async def _requests(self):  # type: ignore[no-untyped-def]
        beat = scheduler_pb2.WorkerSessionRequest(heartbeat=worker_pb2.Heartbeat(healthy=True))
        while True:
            try:
                message = await asyncio.wait_for(self.outbox.get(), 0.1)
            except TimeoutError:
                if self.beats:
                    yield beat
                continue
            if message is None:
                return
            yield message

    async def next_assignment(self) -> worker_pb2.TaskAssignment:
        while True:
            message = await self.call.read()
            if message.WhichOneof("payload") == "assign":
                return message.assign

    def send_chunk(self, a: worker_pb2.TaskAssignment, text: str) -> None:
        self.outbox.put_nowait(scheduler_pb2.WorkerSessionRequest(
            chunk=worker_pb2.TaskChunk(task_id=a.task_id, attempt=a.attempt, text=text, tokens=1)
        ))  # fmt: skip

    def send_done(self, a: worker_pb2.TaskAssignment) -> None:
        self.outbox.put_nowait(scheduler_pb2.WorkerSessionRequest(
            done=worker_pb2.TaskDone(
                task_id=a.task_id, attempt=a.attempt,
                choices=[chat_pb2.ChoiceFinish(index=0, reason=chat_pb2.FINISH_REASON_STOP)],
                usage=chat_pb2.Usage(prompt_tokens=1, completion_tokens=1, total_tokens=2),
            )
        ))  # fmt: skip


def relayed_tokens(cluster: Cluster) -> int:
    """Tokens the core has received for the tasks running now."""
    workers = cluster.core.scheduler.registry
    return sum(task.relayed_tokens for worker in workers for task in worker.active.values())


async def collect(
    call: grpc.aio.UnaryStreamCall,
) -> list[scheduler_pb2.CreateChatCompletionResponse]:
    events = []
    while (event := await call.read()) is not grpc.aio.EOF:
        events.append(event)
    return events


def text_of(events: list[scheduler_pb2.CreateChatCompletionResponse]) -> str:
    return "".join(e.delta.text for e in events if e.WhichOneof("event") == "delta")


@contextlib.asynccontextmanager
async def running_cluster(core: CoreServer) -> AsyncIterator[Cluster]:
    await core.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{core.port}")
    c = Cluster(core, core.identity, channel)
    try:
        yield c
    finally:
        for _agent, task in c.agents:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        await channel.close()
        await c.core.stop(0.1)
