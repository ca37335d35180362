"""`gpucloud worker` as a real process: joins, serves, and drains on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys

from core_cluster import JOIN, Cluster, collect, text_of, until

SIM_MODEL = "meta-llama/Llama-3.1-8B-Instruct"


async def test_sigterm_drains_the_worker_process(cluster: Cluster) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gpucloud_launcher.cli", "worker",
        "--core", cluster.address, "--token", JOIN, "--worker-id", "proc-1",
        "--gpu", "rtx4090", "--speed", "20", "--heartbeat", "0.2",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        await until(lambda: cluster.worker("proc-1"), timeout=20)
        call = cluster.chat(model=SIM_MODEL, max_tokens=40)
        while (await call.read()).WhichOneof("event") != "delta":
            pass
        proc.send_signal(signal.SIGTERM)
        await until(lambda: cluster.core.scheduler.registry.get("proc-1").state.value == "draining")
        rest = await collect(call)
        assert rest[-1].WhichOneof("event") == "finished"
        assert rest[-1].finished.usage.completion_tokens == 40
        assert len(text_of(rest).split()) >= 30
        assert await asyncio.wait_for(proc.wait(), 10) == 0
        assert cluster.worker("proc-1") is None
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
