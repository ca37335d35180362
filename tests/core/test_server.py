"""The core process's surface: health, reflection, graceful shutdown, a real sim worker."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from core_cluster import (
    OPS_TOKEN,
    SIM_MODEL,
    Cluster,
    Refuses,
    ScriptedBackend,
    collect,
    text_of,
    until,
)
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from gpucloud.v1 import monitor_pb2, monitor_pb2_grpc
from gpucloud_worker.sim import SimBackend


async def test_health_says_the_scheduler_serves_only_while_a_worker_is_online(
    cluster: Cluster,
) -> None:
    stub = health_pb2_grpc.HealthStub(cluster.channel)

    async def status(service: str) -> int:
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=service))
        return int(reply.status)

    serving, not_serving = (
        health_pb2.HealthCheckResponse.SERVING,
        health_pb2.HealthCheckResponse.NOT_SERVING,
    )
    assert await status("") == serving
    assert await status("gpucloud.v1.SchedulerService") == not_serving
    agent = await cluster.add_worker(ScriptedBackend(), "w1")
    await until_async(lambda: status("gpucloud.v1.SchedulerService"), serving)
    agent.drain()
    await until_async(lambda: status("gpucloud.v1.SchedulerService"), not_serving)


async def until_async(probe, expected: int) -> None:  # type: ignore[no-untyped-def]
    for _ in range(200):
        if await probe() == expected:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"status never became {expected}")


async def test_reflection_lists_the_services(cluster: Cluster) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(cluster.channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    async for reply in stub.ServerReflectionInfo(iter([request])):
        names = {s.name for s in reply.list_services_response.service}
        break
    assert {
        "gpucloud.v1.SchedulerService",
        "gpucloud.v1.MonitorService",
        "gpucloud.v1.AuthService",
        "grpc.health.v1.Health",
    } <= names


async def test_shutdown_finishes_running_tasks_and_refuses_new_ones(cluster: Cluster) -> None:
    backend = ScriptedBackend(tokens=3, interval=0.05)
    await cluster.add_worker(backend, "w1")
    running = cluster.chat()
    await until(lambda: backend.started)
    stopping = asyncio.create_task(cluster.core.stop(5.0))
    await until(lambda: cluster.core.scheduler.closing)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await collect(cluster.chat())
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    # Load balancers and the gateway's /readyz hear it too, while the running task finishes.
    health = health_pb2_grpc.HealthStub(cluster.channel)
    for service in ("", "gpucloud.v1.SchedulerService"):
        reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
    assert text_of(await collect(running)) == "t0 t1 t2 "
    await stopping
    await until(lambda: cluster.identity.usage.records)
    assert [r.outcome for r in cluster.identity.usage.records] == ["ok"]


async def test_a_simulated_gpu_serves_a_completion_end_to_end(cluster: Cluster) -> None:
    await cluster.add_worker(SimBackend("h100", speed=0, seed=1), "sim-h100")
    events = await collect(cluster.chat(model=SIM_MODEL, max_tokens=12, seed=7))
    assert len(text_of(events).split()) >= 6
    finished = events[-1].finished
    assert finished.usage.completion_tokens == 12
    assert finished.choices[0].reason == 2  # FINISH_REASON_LENGTH
    worker = cluster.core.scheduler.registry.get("sim-h100")
    assert worker is not None and worker.info.gpus[0].name.startswith("NVIDIA H100")
    await until(lambda: worker.readings)  # heartbeats carry the sim's GPU metrics


async def test_the_ops_token_reads_the_cluster_and_nothing_else_gets_in(cluster: Cluster) -> None:
    await cluster.add_worker(ScriptedBackend(), "w1")
    monitor = monitor_pb2_grpc.MonitorServiceStub(cluster.channel)
    reply = await monitor.ListWorkers(
        monitor_pb2.ListWorkersRequest(), metadata=(("authorization", f"Bearer {OPS_TOKEN}"),)
    )
    assert [w.worker_id for w in reply.workers] == ["w1"]
    assert reply.workers[0].state == monitor_pb2.WORKER_STATE_ONLINE
    for metadata in ((), (("authorization", "Bearer not-the-token"),)):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await monitor.GetQueue(monitor_pb2.GetQueueRequest(), metadata=metadata)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


OPS = (("authorization", f"Bearer {OPS_TOKEN}"),)


async def test_the_queue_report_counts_waiting_tasks_by_priority(cluster: Cluster) -> None:
    backend = ScriptedBackend(slots=1, tokens=1)
    backend.gate = asyncio.Event()
    await cluster.add_worker(backend, "w1")
    calls = [cluster.chat(key="key-a-p3")]
    await until(lambda: backend.started)
    calls += [cluster.chat(key="key-b-p7"), cluster.chat(key="key-c-p7"), cluster.chat("key-d-p3")]
    await until(lambda: len(cluster.core.scheduler.queue) == 3)
    await asyncio.sleep(0.05)
    monitor = monitor_pb2_grpc.MonitorServiceStub(cluster.channel)
    queue = await monitor.GetQueue(monitor_pb2.GetQueueRequest(), metadata=OPS)
    assert (queue.depth, queue.running, queue.capacity) == (3, 1, 100)
    assert [(p.priority, p.depth) for p in queue.by_priority] == [(7, 2), (3, 1)]
    assert queue.oldest_wait_ms >= 50
    backend.gate.set()
    for call in calls:
        await collect(call)
    queue = await monitor.GetQueue(monitor_pb2.GetQueueRequest(), metadata=OPS)
    assert (queue.depth, queue.running) == (0, 0)
    assert len(queue.recent_waits_ms) == 4 and max(queue.recent_waits_ms) >= 50


async def test_watch_streams_workers_task_errors_and_stats(cluster: Cluster) -> None:
    await cluster.add_worker(ScriptedBackend(), "w1")
    monitor = monitor_pb2_grpc.MonitorServiceStub(cluster.channel)
    watch = monitor.Watch(monitor_pb2.WatchRequest(), metadata=OPS)
    seen: dict[str, monitor_pb2.WatchResponse] = {}

    async def until_seen(kind: str) -> monitor_pb2.WatchResponse:
        while kind not in seen:
            event = await watch.read()
            seen.setdefault(event.WhichOneof("event"), event)
        return seen[kind]

    first = await asyncio.wait_for(until_seen("worker"), 5)
    assert first.worker.worker_id == "w1"
    with pytest.raises(grpc.aio.AioRpcError):
        await collect(cluster.chat(model="not-served"))  # refused at once: not a task error
    await cluster.add_worker(Refuses(models=("refused",)), "w2")
    with pytest.raises(grpc.aio.AioRpcError):
        await collect(cluster.chat(model="refused"))
    error = await asyncio.wait_for(until_seen("task_error"), 5)
    assert error.task_error.model == "refused"
    stats = await asyncio.wait_for(until_seen("stats"), 5)
    assert stats.stats.workers_online >= 1
    watch.cancel()
