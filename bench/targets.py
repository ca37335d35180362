"""The servers the gateway benchmark measures, each started on free ports and stopped after.

bare     a Starlette endpoint that answers a fixed completion (the ceiling)
relay    bench/relay: gateway -> core -> worker over grpc.aio and nothing else (the baseline)
product  `gpucloud up` with zero-delay simulated workers and an API key with high limits
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
from procs import free_port, spawn, stop, wait_port

from gpucloud.v1 import auth_pb2, auth_pb2_grpc
from gpucloud_server.identity.keyspec import MAX_REQUESTS_PER_MINUTE, MAX_TOKENS_PER_MINUTE

# The gateway's own uvicorn settings (gpucloud_gateway.main.server), as CLI flags.
UVICORN = [
    "--host", "127.0.0.1", "--http", "httptools", "--loop", "uvloop", "--lifespan", "off",
    "--no-access-log", "--no-server-header", "--log-level", "warning", "--timeout-keep-alive", "30",
]  # fmt: skip
JOIN_TOKEN = "bench-join-token"
ADMIN_EMAIL = "admin@gpucloud.local"
ADMIN_PASSWORD = "admin123"
READY_TIMEOUT_S = 90.0


@dataclass
class Target:
    """An OpenAI-compatible base URL to load, and the processes that serve it, by role."""

    name: str
    base_url: str
    keys: list[str] = field(default_factory=list)  # used in turn; none: no Authorization
    processes: dict[str, int] = field(default_factory=dict)

    @property
    def chat_url(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"


def children(pid: int) -> list[int]:
    """Direct children of a process, from /proc (Linux)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def wait_answer(target: Target, body: bytes, timeout: float = READY_TIMEOUT_S) -> dict[str, Any]:
    """Posts `body` until it gets a 200 completion (workers may still be joining); returns it."""
    headers = {"content-type": "application/json"}
    if target.keys:
        headers["authorization"] = f"Bearer {target.keys[0]}"
    deadline = time.monotonic() + timeout
    last = "no answer"
    with httpx.Client(timeout=10) as http:
        while time.monotonic() < deadline:
            try:
                reply = http.post(target.chat_url, content=body, headers=headers)
                if reply.status_code == 200:
                    answer: dict[str, Any] = reply.json()
                    return answer
                last = f"{reply.status_code} {reply.text[:200]}"
            except httpx.HTTPError as err:
                last = repr(err)
            time.sleep(0.2)
    raise TimeoutError(f"{target.name} at {target.chat_url} did not answer: {last}")


@contextlib.contextmanager
def started(procs: list[subprocess.Popen[bytes]]) -> Iterator[None]:
    try:
        yield
    finally:
        for proc in reversed(procs):
            stop(proc)


@contextlib.contextmanager
def bare() -> Iterator[Target]:
    port = free_port()
    proc = spawn(["-m", "uvicorn", "bench.bare:app", *UVICORN, "--port", str(port)])
    with started([proc]):
        wait_port(port)
        yield Target("bare", f"http://127.0.0.1:{port}/v1", [], {"server": proc.pid})


@contextlib.contextmanager
def relay() -> Iterator[Target]:
    core_port, http_port = free_port(), free_port()
    core = f"127.0.0.1:{core_port}"
    procs = [spawn(["-m", "bench.relay.core", "--port", str(core_port)])]
    with started(procs):
        wait_port(core_port)
        procs.append(spawn(["-m", "bench.relay.worker", "--core", core]))
        gateway = ["-m", "uvicorn", "--factory", "bench.relay.gateway:create_app", *UVICORN]
        procs.append(spawn([*gateway, "--port", str(http_port)], {"RELAY_CORE": core}))
        wait_port(http_port)
        pids = {"gateway": procs[2].pid, "core": procs[0].pid, "worker": procs[1].pid}
        yield Target("relay", f"http://127.0.0.1:{http_port}/v1", [], pids)


async def api_keys(address: str, n: int) -> list[str]:
    """Logs in as the default admin and creates `n` keys at the highest limits allowed."""
    async with grpc.aio.insecure_channel(address) as channel:
        auth = auth_pb2_grpc.AuthServiceStub(channel)
        login = await auth.Login(auth_pb2.LoginRequest(email=ADMIN_EMAIL, password=ADMIN_PASSWORD))
        jwt = (("authorization", f"Bearer {login.token}"),)
        request = auth_pb2.CreateApiKeyRequest(
            name="bench",
            rate_limit_per_minute=MAX_REQUESTS_PER_MINUTE,
            tokens_per_minute=MAX_TOKENS_PER_MINUTE,
        )
        return [(await auth.CreateApiKey(request, metadata=jwt)).secret for _ in range(n)]


@contextlib.contextmanager
def product(
    workers: int, keys: int, name: str = "product", checkout: Path | None = None
) -> Iterator[Target]:
    """`gpucloud up`: core and sim workers in one process, the gateway in a child process.
    Requests rotate over `keys` API keys, as a key's requests/min are capped. `checkout`:
    run the packages of another copy of the repository instead (a variant to compare)."""
    grpc_port, http_port = free_port(), free_port()
    env = {"GPUCLOUD_JOIN_TOKEN": JOIN_TOKEN, "GPUCLOUD_QUEUE_CAPACITY": "100000"}
    if checkout is not None:
        parts = ("proto", "server", "gateway", "worker_agent", "common", "simulator", "launcher")
        env["PYTHONPATH"] = os.pathsep.join(str(checkout.resolve() / part) for part in parts)
    with tempfile.TemporaryDirectory(prefix="gpucloud-bench-") as data:
        up = spawn(
            ["-m", "gpucloud_launcher.cli", "up", "--grpc-port", str(grpc_port),
             "--http-port", str(http_port), "--data-dir", data,
             "--workers", str(workers), "--sim-speed", "0"],
            env,
        )  # fmt: skip
        with started([up]):
            wait_port(grpc_port, READY_TIMEOUT_S)
            secrets = asyncio.run(api_keys(f"127.0.0.1:{grpc_port}", keys))
            wait_port(http_port, READY_TIMEOUT_S)
            pids = {"gateway": children(up.pid)[0], "core+workers": up.pid}
            yield Target(name, f"http://127.0.0.1:{http_port}/v1", secrets, pids)


def external(base_url: str, key: str | None) -> contextlib.AbstractContextManager[Target]:
    return contextlib.nullcontext(Target("external", base_url, [key] if key else []))
