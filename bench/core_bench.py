"""Core benchmark: tasks/s and dispatch latency with zero-delay sim workers, then the cost
of 1,000 connected workers heartbeating. Each part runs in its own process.

    python bench/core_bench.py [--workers 8] [--concurrency 32] [--seconds 10] [--fleet 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time

import grpc
from procs import ROOT, cpu_percent, free_port, machine, percentile, sample, spawn, stop, wait_port

from gpucloud.v1 import (
    auth_pb2,
    auth_pb2_grpc,
    chat_pb2,
    monitor_pb2,
    monitor_pb2_grpc,
    scheduler_pb2,
    scheduler_pb2_grpc,
)

TOKEN = "bench-join-token"
MODEL = "meta-llama/Llama-3.1-8B-Instruct"


async def api_key(channel: grpc.aio.Channel) -> tuple[str, str]:
    auth = auth_pb2_grpc.AuthServiceStub(channel)
    login = await auth.Login(
        auth_pb2.LoginRequest(email="admin@gpucloud.local", password="admin123")
    )
    jwt = (("authorization", f"Bearer {login.token}"),)
    created = await auth.CreateApiKey(
        # Zero limits take the server defaults, which run() sets to 0: unlimited.
        auth_pb2.CreateApiKeyRequest(name="bench"),
        metadata=jwt,
    )
    return created.secret, login.token


async def workers_online(channel: grpc.aio.Channel, jwt: str) -> int:
    monitor = monitor_pb2_grpc.MonitorServiceStub(channel)
    reply = await monitor.ListWorkers(
        monitor_pb2.ListWorkersRequest(), metadata=(("authorization", f"Bearer {jwt}"),)
    )
    return sum(1 for w in reply.workers if w.state == monitor_pb2.WORKER_STATE_ONLINE)


async def wait_workers(channel: grpc.aio.Channel, jwt: str, n: int, limit_s: float = 120) -> None:
    deadline = time.monotonic() + limit_s
    while await workers_online(channel, jwt) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"fewer than {n} workers came online")
        await asyncio.sleep(0.2)


async def load(
    channel: grpc.aio.Channel, key: str, concurrency: int, seconds: float
) -> dict[str, float]:
    stub = scheduler_pb2_grpc.SchedulerServiceStub(channel)
    request = scheduler_pb2.CreateChatCompletionRequest(
        model=MODEL,
        messages=[chat_pb2.ChatMessage(role="user", content="Say something short.")],
        sampling=chat_pb2.SamplingParams(max_tokens=16),
    )
    metadata = (("authorization", f"Bearer {key}"),)
    dispatch_ms: list[float] = []
    total_ms: list[float] = []
    errors = 0
    end = time.monotonic() + seconds

    async def client() -> None:
        nonlocal errors
        while time.monotonic() < end:
            t0 = time.perf_counter()
            try:
                async for event in stub.CreateChatCompletion(request, metadata=metadata):
                    if event.WhichOneof("event") == "started":
                        dispatch_ms.append((time.perf_counter() - t0) * 1000)
            except grpc.aio.AioRpcError:
                errors += 1
                continue
            total_ms.append((time.perf_counter() - t0) * 1000)

    started = time.monotonic()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed = time.monotonic() - started
    return {
        "tasks_per_second": len(total_ms) / elapsed,
        "tasks": len(total_ms),
        "errors": errors,
        "dispatch_p50_ms": percentile(dispatch_ms, 50),
        "dispatch_p99_ms": percentile(dispatch_ms, 99),
        "task_p50_ms": percentile(total_ms, 50),
        "task_p99_ms": percentile(total_ms, 99),
    }


async def fleet_cost(
    core_pid: int, channel: grpc.aio.Channel, jwt: str, n: int, address: str
) -> dict[str, float]:
    idle0 = sample(core_pid)
    await asyncio.sleep(5)
    idle1 = sample(core_pid)
    fleet = spawn(["bench/fleet.py", "beats", str(n), address, TOKEN])
    try:
        await wait_workers(channel, jwt, n, limit_s=180)
        await asyncio.sleep(6)  # let a full heartbeat interval pass
        busy0 = sample(core_pid)
        await asyncio.sleep(20)
        busy1 = sample(core_pid)
    finally:
        stop(fleet)
    return {
        "fleet_workers": n,
        "core_idle_cpu_percent": cpu_percent(idle0, idle1),
        "core_cpu_percent_with_fleet": cpu_percent(busy0, busy1),
        "core_rss_mb_idle": idle1.rss_bytes / 2**20,
        "core_rss_mb_with_fleet": busy1.rss_bytes / 2**20,
    }


async def run(args: argparse.Namespace) -> dict[str, object]:
    results: dict[str, object] = {"machine": machine(), "date": time.strftime("%Y-%m-%d")}
    with tempfile.TemporaryDirectory() as data:
        port = free_port()
        address = f"127.0.0.1:{port}"
        env = {
            "GPUCLOUD_JOIN_TOKEN": TOKEN,
            "GPUCLOUD_QUEUE_CAPACITY": "100000",
            "GPUCLOUD_DEFAULT_RPM": "0",
            "GPUCLOUD_DEFAULT_TPM": "0",
        }
        core = spawn(
            ["-m", "gpucloud_launcher.cli", "server", "--grpc-port", str(port), "--data-dir", data],
            env,
        )
        try:
            wait_port(port)
            async with grpc.aio.insecure_channel(address) as channel:
                key, jwt = await api_key(channel)
                workers = spawn(["bench/fleet.py", "agents", str(args.workers), address, TOKEN])
                try:
                    await wait_workers(channel, jwt, args.workers)
                    await load(channel, key, args.concurrency, 2)  # warm-up
                    for concurrency in (1, args.concurrency):
                        results[f"c{concurrency}"] = await load(
                            channel, key, concurrency, args.seconds
                        )
                finally:
                    stop(workers)
                if args.fleet:
                    results["fleet"] = await fleet_cost(core.pid, channel, jwt, args.fleet, address)
        finally:
            stop(core)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--fleet", type=int, default=1000)
    results = asyncio.run(run(parser.parse_args()))
    out = ROOT / "bench" / "results" / f"core-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(f"written to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
