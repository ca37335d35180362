"""The worker registry: who is connected, what they serve, how loaded they are."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

from gpucloud_server.scheduling.capabilities import CHAT_MODEL, Capabilities
from gpucloud_server.scheduling.prefix import LOAD_SLACK, PrefixMemory
from gpucloud_server.scheduling.seams import ChannelFactory, TaskChannel

if TYPE_CHECKING:
    from gpucloud_server.scheduling.outbox import WorkerMessage
    from gpucloud_server.scheduling.tasks import Task


class WorkerState(Enum):
    ONLINE = "online"
    DRAINING = "draining"
    UNHEALTHY = "unhealthy"
    OFFLINE = "offline"


@dataclass(frozen=True, slots=True)
class Gpu:
    name: str
    memory_total_bytes: int
    memory_bandwidth_gbps: float
    bf16_tflops: float


@dataclass(frozen=True, slots=True)
class GpuReading:
    index: int
    utilization_percent: float
    memory_used_bytes: int
    temperature_celsius: float | None
    power_watts: float | None


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """What a worker says of itself when it registers."""

    worker_id: str
    name: str
    backend: str
    gpus: tuple[Gpu, ...]
    models: tuple[tuple[str, str], ...]  # (model id, owned by)
    slots: int
    speed: float
    # model id -> what the worker can do with it; a model left out is a plain chat model
    capabilities: Mapping[str, Capabilities] = field(default_factory=dict)

    def offers(self, model: str) -> Capabilities:
        return self.capabilities.get(model, CHAT_MODEL)


@dataclass(eq=False, slots=True)
class Worker:
    """One worker session as the core sees it; `outbox` feeds the session's writer."""

    info: WorkerInfo
    session: int
    connected_at: float  # wall clock
    last_heartbeat: float  # wall clock, for the dashboard
    last_seen: float  # monotonic clock: the heartbeat deadline runs from here
    outbox: TaskChannel[WorkerMessage | None] = field(default_factory=asyncio.Queue)
    state: WorkerState = WorkerState.ONLINE
    active: dict[str, Task] = field(default_factory=dict)
    readings: tuple[GpuReading, ...] = ()
    status_message: str = ""
    tasks_completed: int = 0
    failures_in_a_row: int = 0  # tasks given back since the last one it finished
    beats: int = 0  # heartbeats received in this session

    @property
    def id(self) -> str:
        return self.info.worker_id

    @property
    def load(self) -> float:
        return len(self.active) / max(1, self.info.slots)

    def serves(self, model: str) -> bool:
        return any(m == model for m, _ in self.info.models)

    def can_take(self) -> bool:
        return self.state is WorkerState.ONLINE and len(self.active) < self.info.slots


def least_loaded(worker: Worker) -> tuple[float, float, str]:
    """The order of preference without a prefix: load, then the faster GPU, then the id."""
    return (worker.load, -worker.info.speed, worker.info.worker_id)


class Registry:
    """Connected workers and recently departed ones (kept for the dashboard)."""

    def __init__(
        self,
        offline_retention_s: float = 600.0,
        channel: ChannelFactory = asyncio.Queue,
        *,
        prefixes: PrefixMemory | None = None,
    ) -> None:
        self._workers: dict[str, Worker] = {}
        # None: prefix-aware dispatch is off and pick() is least-loaded only.
        self.prefixes = prefixes
        self._channel = channel
        self._sessions = 0
        self._offline_retention_s = offline_retention_s
        self.model_first_seen: dict[str, tuple[float, str]] = {}  # id -> (unix time, owned by)

    def __iter__(self) -> Iterator[Worker]:
        return iter(self._workers.values())

    def get(self, worker_id: str) -> Worker | None:
        return self._workers.get(worker_id)

    def add(self, info: WorkerInfo, *, now: float, wall: float) -> tuple[Worker, Worker | None]:
        """Registers a session at `now` (monotonic) / `wall` (unix time); returns it and
        the session it replaces, if any."""
        self._sessions += 1
        previous = self._workers.get(info.worker_id)
        worker = Worker(info, self._sessions, wall, wall, now, outbox=self._channel())
        self._workers[info.worker_id] = worker
        for model, owned_by in info.models:
            self.model_first_seen.setdefault(model, (wall, owned_by))
        if previous is not None and previous.state is WorkerState.OFFLINE:
            previous = None
        return worker, previous

    def live(self) -> Iterator[Worker]:
        return (w for w in self._workers.values() if w.state is not WorkerState.OFFLINE)

    def serving(self, model: str) -> list[Worker]:
        """Workers that serve `model` now or may again soon (online or unhealthy)."""
        return [
            w
            for w in self._workers.values()
            if w.state in (WorkerState.ONLINE, WorkerState.UNHEALTHY) and w.serves(model)
        ]

    def offers(self, model: str) -> list[Capabilities]:
        """What each worker serving `model` (as `serving` counts them) can do with it."""
        return [w.info.offers(model) for w in self.serving(model)]

    def models_with_capacity(self) -> set[str]:
        return {m for w in self._workers.values() if w.can_take() for m, _ in w.info.models}

    def pick(
        self,
        model: str,
        gave_back: Mapping[str, int] | None = None,
        prefix: Sequence[int] = (),
    ) -> Worker | None:
        """A worker with a free slot for `model`: the least loaded (ties to the faster GPU)
        or, with prefix memory, the one recently sent the longest leading run of the
        prompt's block hashes `prefix` among those loaded at most LOAD_SLACK more than
        the least loaded (ties as before). A worker that gave this task back
        (`gave_back`: worker id -> its heartbeat count then) is skipped until it has sent
        another heartbeat."""
        gave_back = gave_back or {}

        def free(w: Worker) -> bool:
            return w.can_take() and w.serves(model) and gave_back.get(w.id) != w.beats

        least = min(filter(free, self._workers.values()), key=least_loaded, default=None)
        if least is None or self.prefixes is None or not prefix:
            return least
        limit = least.load + LOAD_SLACK

        def near(worker_id: str) -> bool:
            w = self._workers.get(worker_id)
            return w is not None and free(w) and w.load <= limit

        holders, _ = self.prefixes.longest(prefix, near)
        return min((self._workers[i] for i in holders), key=least_loaded, default=least)

    def sent(self, worker: Worker, prefix: Sequence[int]) -> None:
        """Remembers that `worker` was given a prompt with these block hashes."""
        if self.prefixes is not None:
            self.prefixes.remember(worker.id, prefix)

    def forget_prefixes(self, worker: Worker) -> None:
        """The worker left: what its cache held is no reason to send it anything."""
        if self.prefixes is not None:
            self.prefixes.forget(worker.id)

    def served_models(self) -> dict[str, int]:
        """Model id -> number of online workers serving it."""
        counts: dict[str, int] = {}
        for worker in self._workers.values():
            if worker.state is WorkerState.ONLINE:
                for model, _ in worker.info.models:
                    counts[model] = counts.get(model, 0) + 1
        return counts

    def expired(self, now: float, timeout_s: float) -> list[Worker]:
        """Live workers whose last heartbeat is older than `timeout_s`."""
        return [w for w in self.live() if now - w.last_seen > timeout_s]

    def prune(self, now: float) -> None:
        for worker in list(self._workers.values()):
            offline = worker.state is WorkerState.OFFLINE
            if offline and now - worker.last_seen > self._offline_retention_s:
                del self._workers[worker.id]
