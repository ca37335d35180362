"""The core process's surface: health, reflection, graceful shutdown, a real sim worker."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from conftest import Cluster, ScriptedBackend, collect, text_of, until
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from gpucloud_worker.sim import SimBackend

SIM_MODEL = "meta-llama/Llama-3.1-8B-Instruct"


async def test_health_reports_serving(cluster: Cluster) -> None:
    stub = health_pb2_grpc.HealthStub(cluster.channel)
    for service in ("", "gpucloud.v1.SchedulerService"):
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=service))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


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
