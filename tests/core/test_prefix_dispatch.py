"""Prefix-aware dispatch in process: a prompt goes where its leading text went before,
unless that worker is much busier than the least loaded one."""

from __future__ import annotations

import asyncio

import grpc
from core_cluster import MODEL as CLUSTER_MODEL
from core_cluster import Cluster, ScriptedBackend, collect, until

from gpucloud.v1 import chat_pb2, scheduler_pb2
from gpucloud_server.config import from_sources
from gpucloud_server.principal import KeyPrincipal, UsageRecord
from gpucloud_server.scheduling.prefix import BLOCK_CHARS, MAX_BLOCKS, PrefixMemory, block_hashes
from gpucloud_server.scheduling.registry import Gpu, Worker, WorkerInfo
from gpucloud_server.scheduling.scheduler import Scheduler, SchedulerConfig
from gpucloud_server.scheduling.tasks import Task, TaskSpec
from gpucloud_server.server import scheduler_config

MODEL = "test-model"
SYSTEM_A = "You are a pirate. " * 40
SYSTEM_B = "You are a careful tax adviser. " * 25
SYSTEM_C = "You translate everything into French. " * 20


class Core:
    """A scheduler without a network; workers are registered, tasks submitted and ended."""

    def __init__(self, *, prefix_aware: bool = True) -> None:
        self.records: list[UsageRecord] = []
        config = SchedulerConfig(queue_capacity=100, prefix_aware_dispatch=prefix_aware)
        self.scheduler = Scheduler(config, lambda spec, record: self.records.append(record))

    def connect(self, worker_id: str, slots: int = 8) -> Worker:
        gpu = Gpu("Test GPU", 1 << 30, 100.0, 10.0)
        info = WorkerInfo(worker_id, worker_id, "test", (gpu,), ((MODEL, "tests"),), slots, 1.0)
        return self.scheduler.connect(info)

    def submit(self, system: str, user: str = "hello") -> Task:
        principal = KeyPrincipal("k", "user-1", "k", 5, frozenset(), 0, 0)
        prefix = block_hashes(MODEL, (("system", system), ("user", user)))
        return self.scheduler.submit(TaskSpec(MODEL, 5, principal, "req", None, prefix))

    def finish(self, task: Task) -> None:
        worker = self.scheduler.registry.get(task.worker_id or "")
        assert worker is not None
        self.scheduler.done(worker, task.ref, ((0, 1),), prompt_tokens=1, completion_tokens=1)


def test_block_hashes_are_chained_and_bounded() -> None:
    a = block_hashes(MODEL, (("system", SYSTEM_A), ("user", "one")))
    b = block_hashes(MODEL, (("system", SYSTEM_A), ("user", "two")))
    assert len(a) == min(MAX_BLOCKS, len(f"system:{SYSTEM_A}\nuser:one") // BLOCK_CHARS)
    assert a == b  # the user's words lie past the last full block of the system prompt
    c = block_hashes(MODEL, (("system", "Z" + SYSTEM_A[1:]), ("user", "one")))
    assert not set(a) & set(c)  # one changed character changes every later hash
    assert len(block_hashes(MODEL, (("user", "x" * 100_000),))) == MAX_BLOCKS
    assert block_hashes(MODEL, (("user", "short"),)) == ()
    assert block_hashes("other-model", (("system", SYSTEM_A), ("user", "one"))) != a


def test_the_same_system_prompt_goes_to_the_same_worker() -> None:
    core = Core()
    for name in ("w1", "w2", "w3"):
        core.connect(name)
    core.submit(SYSTEM_B)  # w1 holds another prompt
    first = core.submit(SYSTEM_A, "first")
    assert first.worker_id == "w2"
    core.finish(first)
    for i in range(5):
        task = core.submit(SYSTEM_A, f"question {i}")
        assert task.worker_id == first.worker_id  # though w3 is as idle
        core.finish(task)


def test_different_prompts_spread_over_the_workers() -> None:
    core = Core()
    for name in ("w1", "w2", "w3"):
        core.connect(name)
    tasks = [core.submit(system) for system in (SYSTEM_A, SYSTEM_B, SYSTEM_C)]
    assert len({t.worker_id for t in tasks}) == 3
    again = [core.submit(system, "again") for system in (SYSTEM_A, SYSTEM_B, SYSTEM_C)]
    assert [t.worker_id for t in again] == [t.worker_id for t in tasks]


def test_a_busy_holder_gives_way_to_the_least_loaded_worker() -> None:
    core = Core()
    holder = core.connect("w1", slots=4)
    core.submit(SYSTEM_A)
    core.connect("w2", slots=4)
    # w1 may run up to LOAD_SLACK (a quarter of its slots) more than w2: 1 task of 4.
    second = core.submit(SYSTEM_A)
    assert second.worker_id == holder.id  # w1 at 1/4, w2 at 0: within the slack
    third = core.submit(SYSTEM_A)
    assert third.worker_id == "w2"  # w1 at 2/4 is past it
    core.finish(second)
    core.finish(third)
    fourth = core.submit(SYSTEM_A)  # both were sent the prompt now: the less loaded wins
    assert fourth.worker_id == "w2"


def test_a_full_holder_is_passed_over() -> None:
    core = Core()
    holder = core.connect("w1", slots=1)
    core.submit(SYSTEM_A)
    core.connect("w2", slots=4)
    assert core.submit(SYSTEM_A).worker_id == "w2"
    assert len(holder.active) == 1


def test_switched_off_it_is_least_loaded_dispatch() -> None:
    core = Core(prefix_aware=False)
    for name in ("w1", "w2"):
        core.connect(name)
    tasks = [core.submit(SYSTEM_A, f"question {i}") for i in range(4)]
    assert [t.worker_id for t in tasks] == ["w1", "w2", "w1", "w2"]
    assert core.scheduler.registry.prefixes is None


def test_a_worker_that_goes_offline_is_forgotten() -> None:
    core = Core()
    w1 = core.connect("w1")
    core.submit(SYSTEM_A)
    memory = core.scheduler.registry.prefixes
    assert memory is not None and len(memory) > 0
    core.scheduler.disconnect(w1)
    assert len(memory) == 0


def test_memory_stays_within_its_bounds() -> None:
    memory = PrefixMemory(per_worker=40, total=100)
    for i in range(50):
        prompt = block_hashes(MODEL, (("system", f"prompt {i} " * 100),))
        memory.remember(f"w{i % 2}", prompt)
        assert len(memory) <= 2 * 40
    for i in range(2, 10):
        memory.remember(f"w{i}", block_hashes(MODEL, (("system", f"late {i} " * 100),)))
        assert len(memory) <= 100  # each joiner shrinks every worker's share
    assert memory.cap == 100 // 10
    assert len(memory) == 10 * 10


def test_the_leading_blocks_are_forgotten_last() -> None:
    memory = PrefixMemory(per_worker=10, total=100)
    prompt = block_hashes(MODEL, (("system", SYSTEM_A),))
    assert len(prompt) > 10
    memory.remember("w1", prompt)
    assert memory.longest(prompt, lambda w: True) == ({"w1"}, 10)
    assert memory.longest(prompt, lambda w: w != "w1") == (set(), 0)


async def test_through_the_core_a_system_prompt_returns_to_its_worker(cluster: Cluster) -> None:
    fast, slow = ScriptedBackend(slots=1, speed=50), ScriptedBackend(slots=1, speed=10)
    fast.gate = asyncio.Event()
    await cluster.add_worker(fast, "fast")
    await cluster.add_worker(slow, "slow")
    busy = cluster.chat()  # a short prompt holds the fast worker's only slot
    await until(lambda: fast.started)
    first = await collect(_chat(cluster, SYSTEM_A, "first"))
    assert _worker_of(first) == "slow"
    fast.gate.set()
    await collect(busy)
    for i in range(3):  # both idle: least-loaded would choose the faster GPU
        assert _worker_of(await collect(_chat(cluster, SYSTEM_A, f"again {i}"))) == "slow"
    assert _worker_of(await collect(_chat(cluster, SYSTEM_B, "other"))) == "fast"


def _chat(cluster: Cluster, system: str, user: str) -> grpc.aio.UnaryStreamCall:
    request = scheduler_pb2.CreateChatCompletionRequest(
        model=CLUSTER_MODEL,
        messages=[
            chat_pb2.ChatMessage(role="system", content=system),
            chat_pb2.ChatMessage(role="user", content=user),
        ],
    )
    return cluster.stub.CreateChatCompletion(request, metadata=(("authorization", "Bearer key-a"),))


def _worker_of(events: list[scheduler_pb2.CreateChatCompletionResponse]) -> str:
    [started] = [e.started for e in events if e.WhichOneof("event") == "started"]
    return started.worker_id


def test_the_setting_is_on_by_default_and_reaches_the_scheduler() -> None:
    assert scheduler_config(from_sources(None, {})).prefix_aware_dispatch
    off = from_sources(None, {"GPUCLOUD_PREFIX_AWARE_DISPATCH": "0"})
    assert not scheduler_config(off).prefix_aware_dispatch
