"""`gpucloud up`: the whole cloud on one machine, as one process tree.

This process runs the core and the simulated workers (in-process agents that
dial the core over loopback gRPC, exactly as remote workers do); the gateway
runs as a child process so HTTP and scheduling use separate cores. Ctrl-C or
SIGTERM stops the gateway first, then drains the workers, then stops the core,
which flushes usage.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import secrets
import signal
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import httpx

from gpucloud_common.logs import setup_logging
from gpucloud_gateway import config as gateway_config
from gpucloud_gateway.config import GatewaySettings
from gpucloud_gateway.main import GRACEFUL_SHUTDOWN_S, run
from gpucloud_server import config as core_config
from gpucloud_server.config import CoreSettings
from gpucloud_server.server import CoreServer
from gpucloud_worker.agent import WorkerAgent
from gpucloud_worker.config import WorkerSettings
from gpucloud_worker.sim import SimBackend, find_gpu

log = logging.getLogger("gpucloud.up")

DEFAULT_GPUS = ("a100", "h100", "rtx4090", "a6000")
STARTUP_TIMEOUT_S = 30.0
DRAIN_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class UpSettings:
    """The core's and the gateway's settings plus the simulated fleet."""

    core: CoreSettings
    gateway: GatewaySettings
    gpus: tuple[str, ...]  # one simulated worker per entry, by catalog key
    sim_speed: float = 1.0


def _fleet(kinds: str, count: int | None) -> tuple[str, ...]:
    """`count` workers cycling through the comma-separated GPU kinds."""
    keys = tuple(k.strip() for k in kinds.split(",") if k.strip())
    if not keys:
        raise ValueError("--gpus needs at least one GPU kind")
    for key in keys:
        find_gpu(key)  # fails early, listing the valid kinds
    total = len(keys) if count is None else count
    if total < 0:
        raise ValueError("--workers must be >= 0")
    return tuple(keys[i % len(keys)] for i in range(total))


def parse(argv: Sequence[str], env: Mapping[str, str] | None = None) -> UpSettings:
    env = os.environ if env is None else env
    parser = argparse.ArgumentParser(
        prog="gpucloud up",
        description="Run core, gateway and simulated GPU workers on this machine.",
    )
    core_config.add_arguments(parser)
    gateway_config.add_arguments(parser, with_core=False)
    fleet = parser.add_argument_group("simulated workers")
    fleet.add_argument("--workers", type=int, help="how many (default: one per --gpus entry)")
    fleet.add_argument(
        "--gpus", help=f"comma-separated GPU kinds (default {','.join(DEFAULT_GPUS)})"
    )
    fleet.add_argument("--sim-speed", type=float, help="x real time; 0 = no delay (default 1)")
    args = parser.parse_args(list(argv))
    workers = args.workers if args.workers is not None else _env_int(env, "GPUCLOUD_SIM_WORKERS")
    kinds = args.gpus or env.get("GPUCLOUD_SIM_GPUS") or ",".join(DEFAULT_GPUS)
    speed = (
        args.sim_speed if args.sim_speed is not None else float(env.get("GPUCLOUD_SIM_SPEED") or 1)
    )
    try:
        # The embedded cloud talks gRPC in plaintext between its own parts; TLS for
        # remote workers is `gpucloud server`'s job.
        core = dataclasses.replace(core_config.from_sources(args, env), tls_cert=None, tls_key=None)
        core.check()
        return UpSettings(
            core=core,
            gateway=dataclasses.replace(
                gateway_config.from_sources(args, env), core_tls=False, core_tls_ca=None
            ),
            gpus=_fleet(kinds, workers),
            sim_speed=speed,
        )
    except ValueError as err:
        parser.error(str(err))


def _without_tls(env: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k != "GPUCLOUD_CORE_TLS_CA"}


def _env_int(env: Mapping[str, str], name: str) -> int | None:
    return int(env[name]) if env.get(name) else None


def _gateway_command(g: GatewaySettings) -> list[str]:
    command = [
        sys.executable, "-m", "gpucloud_gateway.main",
        "--http-host", g.http_host, "--http-port", str(g.http_port),
        "--core", g.core_address, "--max-body-bytes", str(g.max_body_bytes),
        "--keepalive-s", str(g.keepalive_s),
        "--log-level", g.log_level, "--log-format", g.log_format, "--exit-with-parent",
    ]  # fmt: skip
    if g.web_dir is not None:
        command += ["--web-dir", str(g.web_dir)]
    return command


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _probe_url(g: GatewaySettings) -> str:
    host = "127.0.0.1" if g.http_host in ("0.0.0.0", "::", "") else g.http_host
    return f"http://{host}:{g.http_port}/healthz"


class Cloud:
    """The running parts; start() brings them up, stop() takes them down in order."""

    def __init__(self, settings: UpSettings) -> None:
        self.settings = settings
        self.core: CoreServer | None = None
        self.agents: list[WorkerAgent] = []
        self._agent_tasks: list[asyncio.Task[None]] = []
        self.gateway: asyncio.subprocess.Process | None = None
        self.gateway_settings = settings.gateway

    async def start(self) -> None:
        core = self.settings.core
        # The gateway is spawned before gRPC starts any thread: forking a process with
        # live gRPC threads is unsafe (and gRPC says so on stderr).
        core_port = core.grpc_port or _free_port(core.grpc_host)
        core_address = f"127.0.0.1:{core_port}"
        # The gateway reads the cluster (/readyz, /metrics) with a read-only ops token.
        ops_token = core.ops_token or self.settings.gateway.ops_token or secrets.token_urlsafe(32)
        self.gateway_settings = dataclasses.replace(
            self.settings.gateway, core_address=core_address, ops_token=ops_token
        )
        self.gateway = await asyncio.create_subprocess_exec(
            *_gateway_command(self.gateway_settings),
            stdin=asyncio.subprocess.PIPE,
            env={**_without_tls(os.environ), "GPUCLOUD_OPS_TOKEN": ops_token},
        )
        self.core = CoreServer(dataclasses.replace(core, grpc_port=core_port, ops_token=ops_token))
        await self.core.start()
        for i, kind in enumerate(self.settings.gpus, start=1):
            worker = WorkerSettings(
                core_address=core_address,
                join_token=core.join_token,
                worker_id=f"sim-{i}-{kind}",
                name=f"sim-{kind}-{i}",
                heartbeat_interval_s=core.heartbeat_interval_s,
            )
            agent = WorkerAgent(worker, SimBackend(kind, speed=self.settings.sim_speed, seed=i))
            self.agents.append(agent)
            self._agent_tasks.append(asyncio.create_task(agent.run(), name=f"agent-{i}"))
        await self._wait_ready()

    async def _wait_ready(self) -> None:
        """Until the gateway answers and every simulated worker has registered."""
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        url = _probe_url(self.gateway_settings)
        async with httpx.AsyncClient(timeout=1.0) as http:
            while time.monotonic() < deadline:
                if self.gateway is not None and self.gateway.returncode is not None:
                    raise RuntimeError(f"the gateway exited with status {self.gateway.returncode}")
                with contextlib.suppress(httpx.HTTPError):
                    gateway_up = (await http.get(url)).status_code == 200
                    if gateway_up and self.workers_online() >= len(self.agents):
                        return
                await asyncio.sleep(0.05)
        raise RuntimeError(f"not ready after {STARTUP_TIMEOUT_S:.0f} s")

    def workers_online(self) -> int:
        return 0 if self.core is None else sum(1 for _ in self.core.scheduler.registry.live())

    async def stop(self) -> None:
        await self._stop_gateway()
        for agent in self.agents:
            agent.drain()
        if self._agent_tasks:
            _, pending = await asyncio.wait(self._agent_tasks, timeout=DRAIN_TIMEOUT_S)
            for task in pending:
                task.cancel()
            await asyncio.gather(*self._agent_tasks, return_exceptions=True)
        if self.core is not None:
            await self.core.stop()

    async def _stop_gateway(self) -> None:
        proc = self.gateway
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), GRACEFUL_SHUTDOWN_S + 3)
        except TimeoutError:
            proc.kill()
            await proc.wait()


def _login(core: CoreSettings) -> str:
    """The admin login; a password the operator chose is never echoed to the terminal."""
    if core.admin_password == CoreSettings().admin_password:
        return f"{core.admin_email} / {core.admin_password}  (the default until changed)"
    return f"{core.admin_email}  (password from GPUCLOUD_ADMIN_PASSWORD)"


def banner(cloud: Cloud) -> str:
    g, c = cloud.gateway_settings, cloud.settings.core
    base = f"http://{g.http_host}:{g.http_port}"
    gpus = ", ".join(find_gpu(k).spec().name for k in cloud.settings.gpus) or "none"
    return "\n".join(
        [
            "gpucloud is up",
            f"  dashboard   {base}/",
            f"  OpenAI API  {base}/v1",
            f"  gRPC        {g.core_address}",
            f"  login       {_login(c)}",
            f"  workers     {len(cloud.settings.gpus)} simulated: {gpus}",
            f"  data        {c.data_dir.resolve()}",
            f"  add a GPU   gpucloud worker --core {g.core_address} --token {c.join_token}",
            "Press Ctrl-C to stop.",
        ]
    )


async def serve(settings: UpSettings) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    cloud = Cloud(settings)
    try:
        await cloud.start()
        print(banner(cloud), flush=True)
        assert cloud.gateway is not None
        gateway_exit = asyncio.create_task(cloud.gateway.wait())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({gateway_exit, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if gateway_exit.done():
            log.error("the gateway exited", extra={"status": gateway_exit.result()})
            return 1
        gateway_exit.cancel()
        return 0
    except RuntimeError as err:
        log.error("gpucloud up failed: %s", err)
        return 1
    finally:
        print("gpucloud is shutting down…", flush=True)
        await cloud.stop()
        print("gpucloud stopped", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse(sys.argv[1:] if argv is None else argv)
    setup_logging(settings.gateway.log_level, settings.gateway.log_format)
    return run(serve(settings))


if __name__ == "__main__":
    sys.exit(main())
