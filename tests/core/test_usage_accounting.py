"""Billing through a real core and its real storage: one usage row per task, whatever
happened to the task (finished, refused by the worker, cancelled, moved to another worker
after a crash, cut off mid-stream)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
import sqlalchemy as sa
from core_cluster import (
    Cluster,
    RawWorker,
    Refuses,
    ScriptedBackend,
    collect,
    running_cluster,
    until,
)

from gpucloud.v1 import auth_pb2, auth_pb2_grpc, monitor_pb2, monitor_pb2_grpc
from gpucloud_server.config import CoreSettings
from gpucloud_server.identity.storage.tables import usage
from gpucloud_server.server import CoreServer


@pytest.fixture
async def billed(core_settings: CoreSettings) -> AsyncIterator[tuple[Cluster, str, str]]:
    """A core with real identity (SQLite in a temp dir), an API key of its admin and the
    admin's session token."""
    async with running_cluster(CoreServer(core_settings)) as cluster:
        auth = auth_pb2_grpc.AuthServiceStub(cluster.channel)
        login = await auth.Login(
            auth_pb2.LoginRequest(
                email=core_settings.admin_email, password=core_settings.admin_password
            )
        )
        created = await auth.CreateApiKey(
            auth_pb2.CreateApiKeyRequest(name="billing"),
            metadata=(("authorization", f"Bearer {login.token}"),),
        )
        yield cluster, created.secret, login.token


async def _rows(cluster: Cluster) -> dict[str, tuple[str, str, int]]:
    """Usage rows by task id: (outcome, worker, completion tokens), once written."""
    await cluster.core.identity.usage.flush()
    columns = (usage.c.task_id, usage.c.outcome, usage.c.worker_id, usage.c.completion_tokens)
    async with cluster.core.identity.database.read() as conn:
        rows = (await conn.execute(sa.select(*columns))).all()
    return {task_id: (outcome, worker, tokens) for task_id, outcome, worker, tokens in rows}


async def _task_id(call: grpc.aio.UnaryStreamCall) -> str:
    while (event := await call.read()).WhichOneof("event") != "started":
        pass
    return str(event.started.task_id)


async def test_usage_rows_equal_tasks_after_a_mixed_run(
    billed: tuple[Cluster, str, str],
) -> None:
    cluster, key, jwt = billed
    await cluster.add_worker(ScriptedBackend(models=("good",), tokens=3), "w-good")
    await cluster.add_worker(Refuses(models=("bad",)), "w-bad")
    slow = ScriptedBackend(models=("slow",), tokens=1000, interval=0.01)
    await cluster.add_worker(slow, "w-slow")
    expected: dict[str, tuple[str, str]] = {}

    for _ in range(2):  # finished, streamed and collected
        events = await collect(cluster.chat(key, "good"))
        expected[events[0].started.task_id] = ("ok", "w-good")
    [whole] = await collect(cluster.chat(key, "good", collect=True))
    expected[whole.completed.started.task_id] = ("ok", "w-good")

    refused = cluster.chat(key, "bad")
    expected[await _task_id(refused)] = ("error", "w-bad")
    with pytest.raises(grpc.aio.AioRpcError):
        await collect(refused)

    hung_up = cluster.chat(key, "slow")
    expected[await _task_id(hung_up)] = ("cancelled", "w-slow")
    while (await hung_up.read()).WhichOneof("event") != "delta":
        pass  # a few tokens in
    hung_up.cancel()

    # A worker dies before its first token: the task runs again elsewhere, billed once.
    doomed = RawWorker(cluster, "w-doomed", model="moved")
    await until(lambda: cluster.worker("w-doomed"))
    moved = cluster.chat(key, "moved")
    await doomed.next_assignment()
    await cluster.add_worker(ScriptedBackend(models=("moved",), tokens=2), "w-moved")
    doomed.call.cancel()
    events = await collect(moved)
    started = [e.started for e in events if e.WhichOneof("event") == "started"]
    expected[started[-1].task_id] = ("ok", "w-moved")

    # A worker dies after its first token: the task fails, its one token billed.
    cut = RawWorker(cluster, "w-cut", model="cut")
    await until(lambda: cluster.worker("w-cut"))
    cut_off = cluster.chat(key, "cut")
    assignment = await cut.next_assignment()
    cut.send_chunk(assignment, "partial ")
    expected[await _task_id(cut_off)] = ("error", "w-cut")
    while (await cut_off.read()).WhichOneof("event") != "delta":
        pass
    cut.call.cancel()
    with pytest.raises(grpc.aio.AioRpcError):
        await collect(cut_off)

    await until(lambda: cluster.core.scheduler.running == 0)
    rows = await _rows(cluster)
    assert len(expected) == 7
    assert {task: row[:2] for task, row in rows.items()} == expected
    assert rows[started[-1].task_id][2] == 2
    assert rows[assignment.task_id][2] == 1
    assert 0 < rows[next(t for t, v in expected.items() if v[0] == "cancelled")][2] < 1000

    # The Monitor API's aggregates read the same rows.
    monitor = monitor_pb2_grpc.MonitorServiceStub(cluster.channel)
    metrics = await monitor.GetMetrics(
        monitor_pb2.GetMetricsRequest(window_minutes=5, bucket_seconds=60),
        metadata=(("authorization", f"Bearer {jwt}"),),
    )
    by_model = {s.id: s.requests for s in metrics.by_model}
    assert by_model == {"good": 3, "bad": 1, "slow": 1, "moved": 1, "cut": 1}
    assert sum(b.requests for b in metrics.buckets) == 7
    assert sum(b.errors for b in metrics.buckets) == 2
    assert [s.requests for s in metrics.by_key] == [7]
