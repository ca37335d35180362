"""Runs many worker sessions in one process: real sim agents, or bare heartbeating sessions.

python bench/fleet.py agents N CORE TOKEN     N WorkerAgents with zero-delay sim GPUs
python bench/fleet.py beats N CORE TOKEN      N bare sessions that only heartbeat (5 s)
"""

from __future__ import annotations

import asyncio
import sys

import grpc

from gpucloud.v1 import scheduler_pb2, scheduler_pb2_grpc, worker_pb2
from gpucloud_worker.agent import WorkerAgent
from gpucloud_worker.config import WorkerSettings
from gpucloud_worker.sim import SimBackend

GPUS = ("h100", "a100", "a6000", "rtx4090")
MODEL = "meta-llama/Llama-3.1-8B-Instruct"


async def agents(n: int, core: str, token: str) -> None:
    runs = []
    for i in range(n):
        settings = WorkerSettings(core, token, f"bench-{i}", f"bench-{i}")
        backend = SimBackend(GPUS[i % len(GPUS)], models=[MODEL], speed=0)
        runs.append(WorkerAgent(settings, backend).run())
    await asyncio.gather(*runs)


async def _beating_session(
    stub: scheduler_pb2_grpc.SchedulerServiceStub, i: int, token: str
) -> None:
    async def requests():  # type: ignore[no-untyped-def]
        yield scheduler_pb2.WorkerSessionRequest(
            register=worker_pb2.RegisterWorker(
                join_token=token, worker_id=f"beat-{i}", name=f"beat-{i}", backend="bench",
                models=[worker_pb2.WorkerModel(id="bench-model")], slots=8, speed=1.0,
                gpus=[worker_pb2.GpuSpec(name="bench GPU", memory_total_bytes=80 << 30)],
            )
        )  # fmt: skip
        await asyncio.sleep(5 * (i % 100) / 100)  # spread the beats over the interval
        while True:
            yield scheduler_pb2.WorkerSessionRequest(
                heartbeat=worker_pb2.Heartbeat(
                    healthy=True,
                    gpus=[worker_pb2.GpuMetrics(index=0, utilization_percent=10.0,
                                                memory_used_bytes=20 << 30)],
                )
            )  # fmt: skip
            await asyncio.sleep(5)

    async for _ in stub.WorkerSession(requests()):
        pass


async def beats(n: int, core: str, token: str) -> None:
    channels = [grpc.aio.insecure_channel(core) for _ in range(max(1, n // 100))]
    stubs = [scheduler_pb2_grpc.SchedulerServiceStub(c) for c in channels]
    await asyncio.gather(*(_beating_session(stubs[i % len(stubs)], i, token) for i in range(n)))


def main() -> None:
    mode, n, core, token = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    asyncio.run((agents if mode == "agents" else beats)(n, core, token))


if __name__ == "__main__":
    main()
