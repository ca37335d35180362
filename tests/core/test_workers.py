"""Worker liveness through a real core: loss, re-queue, fencing, cancellation, drain, reconnect."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest
from core_cluster import (
    JOIN,
    MODEL,
    Cluster,
    RawWorker,
    ScriptedBackend,
    collect,
    relayed_tokens,
    text_of,
    until,
)

from gpucloud.v1 import scheduler_pb2, worker_pb2
from gpucloud_server.server import CoreServer
from gpucloud_worker import agent as agent_module
from gpucloud_worker.agent import WorkerAgent
from gpucloud_worker.backend import BackendError, ErrorKind, Health
from gpucloud_worker.config import WorkerSettings

ROOT = Path(__file__).resolve().parents[2]


async def test_a_wrong_join_token_is_refused(cluster: Cluster) -> None:
    register = worker_pb2.RegisterWorker(
        join_token="nope", worker_id="x", slots=1, models=[worker_pb2.WorkerModel(id=MODEL)]
    )
    call = cluster.stub.WorkerSession(iter([scheduler_pb2.WorkerSessionRequest(register=register)]))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call.read()
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_a_task_not_yet_streaming_moves_to_another_worker(cluster: Cluster) -> None:
    doomed = RawWorker(cluster, "doomed")
    await until(lambda: cluster.worker("doomed"))
    call = cluster.chat()
    await doomed.next_assignment()
    await cluster.add_worker(ScriptedBackend(tokens=2), "healthy")
    doomed.call.cancel()  # the worker dies before its first token
    events = await collect(call)
    assert text_of(events) == "t0 t1 "
    assert events[-1].WhichOneof("event") == "finished"


async def test_a_task_mid_stream_ends_with_an_error_and_frees_the_slot(cluster: Cluster) -> None:
    doomed = RawWorker(cluster, "doomed")
    await until(lambda: cluster.worker("doomed"))
    call = cluster.chat()
    assignment = await doomed.next_assignment()
    doomed.send_chunk(assignment, "partial ")
    while (await call.read()).WhichOneof("event") != "delta":
        pass
    doomed.call.cancel()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await collect(call)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert cluster.core.scheduler.running == 0
    await until(lambda: cluster.identity.usage.records)
    record = cluster.identity.usage.records[0]
    assert (record.outcome, record.completion_tokens) == ("error", 1)


async def test_missed_heartbeats_mark_a_worker_offline_and_requeue(cluster: Cluster) -> None:
    silent = RawWorker(cluster, "silent", beats=False)
    await until(lambda: cluster.worker("silent"))
    call = cluster.chat()
    await silent.next_assignment()
    await cluster.add_worker(ScriptedBackend(tokens=1), "healthy")
    # 3 missed beats of 0.2 s and the reaper's 1 s tick; nothing else would ever reap it.
    await until(lambda: cluster.worker("silent") is None, timeout=10)
    assert text_of(await collect(call)) == "t0 "


async def test_a_worker_beats_as_often_as_the_core_expects(cluster: Cluster) -> None:
    await cluster.add_worker(ScriptedBackend(), "lazy", heartbeat_s=30)  # its own setting
    worker = cluster.worker("lazy")
    # The core expects a beat every 0.2 s: 4 beats take about a second; on its own 30 s
    # setting the first would come after the deadline.
    await until(lambda: worker.beats >= 4, timeout=10)
    assert cluster.worker("lazy") is worker


async def test_late_output_of_a_presumed_dead_worker_is_fenced(cluster: Cluster) -> None:
    zombie = RawWorker(cluster, "zombie")
    await until(lambda: cluster.worker("zombie"))
    call = cluster.chat()
    stale = await zombie.next_assignment()
    slow = ScriptedBackend(tokens=1)
    slow.gate = asyncio.Event()
    await cluster.add_worker(slow, "healthy")
    zombie.call.cancel()
    await until(lambda: slow.started)
    back = RawWorker(cluster, "zombie")  # reconnects with the same id and replays old output
    await until(lambda: cluster.worker("zombie"))
    back.send_chunk(stale, "STALE ")
    back.send_done(stale)
    await until(lambda: cluster.core.scheduler.fenced >= 2)
    slow.gate.set()
    assert text_of(await collect(call)) == "t0 "
    back.outbox.put_nowait(None)


@pytest.mark.parametrize("whole", [False, True], ids=["streamed", "collected"])
async def test_a_client_hangup_cancels_the_task_on_the_worker(
    cluster: Cluster, whole: bool
) -> None:
    # Endless at a token per 10 ms: its generation closes only if the core cancels it.
    backend = ScriptedBackend(tokens=10**9, interval=0.01)
    await cluster.add_worker(backend, "w1")
    call = cluster.chat(collect=whole)
    if whole:  # the caller hears nothing until the end: hang up once tokens flow
        await until(lambda: relayed_tokens(cluster) > 0)
    else:
        while (await call.read()).WhichOneof("event") != "delta":
            pass
    call.cancel()
    await until(lambda: backend.closed, timeout=10)  # the cancel reached the worker
    assert cluster.core.scheduler.running == 0
    await until(lambda: cluster.identity.usage.records)
    record = cluster.identity.usage.records[0]
    assert record.outcome == "cancelled" and record.completion_tokens > 0
    assert record.prompt_tokens == 5  # the prompt was processed, so it is billed


async def test_a_draining_worker_finishes_its_tasks_and_takes_no_new_ones(cluster: Cluster) -> None:
    old = ScriptedBackend(tokens=2)
    old.gate = asyncio.Event()
    agent = await cluster.add_worker(old, "old")
    running = cluster.chat()
    await until(lambda: old.started)
    agent.drain()
    await until(lambda: cluster.core.scheduler.registry.get("old").state.value == "draining")
    new = ScriptedBackend(tokens=1)
    await cluster.add_worker(new, "new")
    assert text_of(await collect(cluster.chat())) == "t0 "
    assert len(old.started) == 1 and len(new.started) == 1
    old.gate.set()
    assert text_of(await collect(running)) == "t0 t1 "
    await until(lambda: cluster.worker("old") is None)


async def test_a_worker_reconnects_after_the_core_restarts(cluster: Cluster) -> None:
    agent = await cluster.add_worker(ScriptedBackend(tokens=1), "w1")
    port = cluster.core.port
    await cluster.core.stop(0.1)
    settings = cluster.core.settings.__class__(
        **{**_fields(cluster.core.settings), "grpc_port": port}
    )
    cluster.core = CoreServer(settings, cluster.identity)
    await cluster.core.start()
    await until(lambda: cluster.worker("w1"), timeout=5)
    assert agent.sessions >= 2
    assert text_of(await collect(cluster.chat())) == "t0 "


class RecordedSleeps:
    """Stands in for the agent module's `asyncio`: records each delay the agent sleeps and
    returns at once, so the backoff is read from the agent's own numbers, not a clock."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    async def sleep(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)


async def test_a_worker_without_a_core_retries_ever_more_slowly_up_to_the_cap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sleeps = RecordedSleeps()
    monkeypatch.setattr(agent_module, "asyncio", sleeps)
    with socket.socket() as unused:  # a port nothing listens on
        unused.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{unused.getsockname()[1]}"
    settings = WorkerSettings(
        address, JOIN, "lonely", "lonely", reconnect_min_s=0.05, reconnect_max_s=0.4
    )
    run = asyncio.create_task(WorkerAgent(settings, ScriptedBackend()).run())
    await until(lambda: len(sleeps.delays) >= 8, timeout=10)
    run.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await run
    # Each wait is the delay so far ±20 %, doubling from 0.05 s and then held at 0.4 s.
    expected = (0.05, 0.1, 0.2, 0.4, 0.4, 0.4, 0.4, 0.4)
    for delay, base in zip(sleeps.delays, expected, strict=False):
        assert 0.8 * base <= delay <= 1.2 * base
    assert max(sleeps.delays) <= 1.2 * settings.reconnect_max_s


def _fields(settings: object) -> dict[str, object]:
    return {name: getattr(settings, name) for name in settings.__dataclass_fields__}  # type: ignore[attr-defined]


def test_generated_code_is_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


class RefusingBackend(ScriptedBackend):
    """Gives every task back before its first token, as a worker whose upstream is down."""

    async def generate(self, request):  # type: ignore[no-untyped-def,override]
        self.started.append(request.task_id)
        raise BackendError(ErrorKind.RETRYABLE, "upstream connection failed (ConnectError)")
        yield  # an async generator that never yields

    async def health(self) -> Health:
        # Like a real upstream-down worker, its probe agrees once it has failed.
        return Health((), healthy=not self.started, message="upstream down")


async def test_a_task_given_back_runs_elsewhere_and_the_worker_rests(cluster: Cluster) -> None:
    refusing = RefusingBackend(speed=100)  # the faster worker gets the task first
    await cluster.add_worker(refusing, "refusing")
    call = cluster.chat()
    await until(lambda: refusing.started)
    refusing_worker = cluster.core.scheduler.registry.get("refusing")
    await until(lambda: refusing_worker.state.value == "unhealthy")
    await cluster.add_worker(ScriptedBackend(tokens=2), "healthy")
    events = await collect(call)
    assert text_of(events) == "t0 t1 "
    assert len(refusing.started) == 1  # not retried on the worker that gave it back


class AlwaysRefusing(ScriptedBackend):
    """Gives back every task but stays healthy: a request that no backend can run."""

    async def generate(self, request):  # type: ignore[no-untyped-def,override]
        self.started.append(request.task_id)
        raise BackendError(ErrorKind.RETRYABLE, "upstream said 503")
        yield  # an async generator that never yields


async def test_one_poison_request_does_not_bench_the_fleet(cluster: Cluster) -> None:
    backends = [AlwaysRefusing(), AlwaysRefusing()]
    for i, backend in enumerate(backends):
        await cluster.add_worker(backend, f"w{i}")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await collect(cluster.chat())
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "upstream said" not in (err.value.details() or "")  # no backend internals
    assert all(b.started for b in backends)  # tried on both before giving up
    states = {cluster.core.scheduler.registry.get(f"w{i}").state.value for i in range(2)}
    assert states == {"online"}


class TooLong(ScriptedBackend):
    async def generate(self, request):  # type: ignore[no-untyped-def,override]
        raise BackendError(
            ErrorKind.INVALID_REQUEST,
            "This model's maximum context length is 8 tokens.",
            {"code": "context_length_exceeded", "param": "messages"},
        )
        yield  # an async generator that never yields


@pytest.mark.parametrize("whole", [False, True], ids=["streamed", "collected"])
async def test_a_worker_error_keeps_its_openai_code_and_param(
    cluster: Cluster, whole: bool
) -> None:
    await cluster.add_worker(TooLong(), "w1")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await collect(cluster.chat(collect=whole))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    trailing = dict(err.value.trailing_metadata() or ())
    assert trailing["x-error-code"] == "context_length_exceeded"
    assert trailing["x-error-param"] == "messages"


async def test_a_drain_that_takes_too_long_stops_the_stuck_task(cluster: Cluster) -> None:
    stuck = ScriptedBackend(tokens=1)
    stuck.gate = asyncio.Event()  # never opened: the task hangs before its first token
    agent = await cluster.add_worker(stuck, "stuck")
    agent.settings = dataclasses.replace(agent.settings, drain_timeout_s=0.2)
    call = cluster.chat()
    await until(lambda: stuck.started)
    await cluster.add_worker(ScriptedBackend(tokens=1), "spare")
    agent.drain()
    # The stuck task is stopped, the worker leaves, the task runs on the spare worker.
    assert text_of(await collect(call)) == "t0 "
    await until(lambda: cluster.worker("stuck") is None)
