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
from gpucloud_common.loop import run
from gpucloud_common.settings import add_arguments, load, new_parser, option, to_argv
from gpucloud_common.signals import run_until_signalled
from gpucloud_gateway.config import GatewaySettings
from gpucloud_gateway.main import GRACEFUL_SHUTDOWN_S
from gpucloud_server.config import CoreSettings
from gpucloud_server.server import CoreServer
from gpucloud_sim import find_gpu
from gpucloud_sim.cost import PRECISIONS
from gpucloud_worker.agent import WorkerAgent
from gpucloud_worker.config import WorkerSettings
from gpucloud_worker.sim import SimBackend

log = logging.getLogger("gpucloud.up")

DEFAULT_GPUS = ("a100", "h100", "rtx4090", "a6000")
STARTUP_TIMEOUT_S = 30.0
DRAIN_TIMEOUT_S = 5.0

# What `up` does not take from its parts: the embedded cloud talks gRPC in plaintext
# on loopback (TLS for remote workers is `gpucloud server`'s job), and `up` itself
# tells its gateway where the core is, to exit with it, and the core's ops token.
CORE_IGNORED = ("tls_cert", "tls_key")
GATEWAY_IGNORED = ("core_address", "core_tls", "core_tls_ca", "exit_with_parent", "ops_token")


def gpu_kinds(text: str) -> tuple[str, ...]:
    """`--gpus`: comma-separated catalog keys; an unknown one fails, listing the valid."""
    keys = tuple(k.strip() for k in text.split(",") if k.strip())
    if not keys:
        raise ValueError("needs at least one GPU kind")
    for key in keys:
        find_gpu(key)
    return keys


def has_fp8(kind: str) -> bool:
    """Whether a catalog GPU has FP8 tensor cores (Hopper, Ada; not Ampere)."""
    return find_gpu(kind).dense_fp8_flops is not None


def worker_precision(kind: str, wanted: str) -> str:
    """What a simulated worker of `kind` serves in when `up` is asked for `wanted`:
    fp8 only where the GPU has FP8 tensor cores, bf16 elsewhere, as a mixed fleet
    serving an FP8 checkpoint on Hopper/Ada and a BF16 one on Ampere would."""
    return wanted if wanted == "bf16" or has_fp8(kind) else "bf16"


@dataclass(frozen=True, slots=True)
class FleetOptions:
    """The simulated workers `up` runs in-process."""

    gpus: tuple[str, ...] = option(
        DEFAULT_GPUS,
        flag="--gpus",
        env="GPUCLOUD_SIM_GPUS",
        parse=gpu_kinds,
        help="comma-separated GPU kinds, one worker per entry",
        default_help=",".join(DEFAULT_GPUS),
    )
    workers: int | None = option(
        None,
        flag="--workers",
        env="GPUCLOUD_SIM_WORKERS",
        parse=int,
        help="how many workers, cycling through --gpus",
        default_help="one per --gpus entry",
    )
    sim_speed: float = option(
        1.0, flag="--sim-speed", env="GPUCLOUD_SIM_SPEED", help="x real time; 0: no delays"
    )
    sim_precision: str = option(
        "bf16",
        flag="--sim-precision",
        env="GPUCLOUD_SIM_PRECISION",
        choices=PRECISIONS,
        help="precision the simulated workers serve in; fp8 applies to the GPU kinds with "
        "FP8 tensor cores (h100, rtx4090), the others stay bf16, and fails when none has them",
    )

    def fleet(self) -> tuple[str, ...]:
        """One GPU kind per simulated worker; ValueError for a fleet that cannot serve
        the precision asked for."""
        total = len(self.gpus) if self.workers is None else self.workers
        if total < 0:
            raise ValueError("--workers must be >= 0")
        kinds = tuple(self.gpus[i % len(self.gpus)] for i in range(total))
        if self.sim_precision == "fp8" and kinds and not any(has_fp8(k) for k in kinds):
            raise ValueError(
                f"--sim-precision fp8: no GPU of the fleet ({', '.join(sorted(set(kinds)))}) "
                "has FP8 tensor cores; add h100 or rtx4090 to --gpus, or serve bf16"
            )
        return kinds


@dataclass(frozen=True, slots=True)
class UpSettings:
    """The core's and the gateway's settings plus the simulated fleet."""

    core: CoreSettings
    gateway: GatewaySettings
    gpus: tuple[str, ...]  # one simulated worker per entry, by catalog key
    sim_speed: float = 1.0
    sim_precision: str = "bf16"  # per worker as worker_precision() decides


def parser() -> argparse.ArgumentParser:
    """`gpucloud up`'s command line: only the options it honours."""
    cli = new_parser("gpucloud up", "Run core, gateway and simulated GPU workers on this machine.")
    add_arguments(cli, CoreSettings, exclude=CORE_IGNORED, title="core")
    add_arguments(cli, GatewaySettings, exclude=GATEWAY_IGNORED, title="gateway")
    add_arguments(cli, FleetOptions, title="simulated workers")
    return cli


def parse(argv: Sequence[str], env: Mapping[str, str]) -> UpSettings:
    """Checked settings; a bad value exits with a usage error."""
    cli = parser()
    args = cli.parse_args(list(argv))
    try:
        core = load(CoreSettings, args, env, exclude=CORE_IGNORED)
        core.check()
        fleet = load(FleetOptions, args, env)
        return UpSettings(
            core=core,
            gateway=load(GatewaySettings, args, env, exclude=GATEWAY_IGNORED),
            gpus=fleet.fleet(),
            sim_speed=fleet.sim_speed,
            sim_precision=fleet.sim_precision,
        )
    except ValueError as err:
        cli.error(str(err))


def _without_tls(env: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k != "GPUCLOUD_CORE_TLS_CA"}


def _gateway_command(g: GatewaySettings) -> list[str]:
    """The gateway child's command line: its settings as flags (the rest is in its env)."""
    return [sys.executable, "-m", "gpucloud_gateway.main", *to_argv(g)]


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
        ops_token = core.ops_token or secrets.token_urlsafe(32)
        self.gateway_settings = dataclasses.replace(
            self.settings.gateway,
            core_address=core_address,
            ops_token=ops_token,
            exit_with_parent=True,  # the gateway never outlives `up`
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
            precision = worker_precision(kind, self.settings.sim_precision)
            backend = SimBackend(kind, speed=self.settings.sim_speed, seed=i, precision=precision)
            agent = WorkerAgent(worker, backend)
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

    async def stop(self, *, force: bool = False) -> None:
        """Gateway, workers, core, in that order; `force` gives no one any grace."""
        await self._stop_gateway(force)
        for agent in self.agents:
            agent.drain()
        if self._agent_tasks:
            timeout = 0 if force else DRAIN_TIMEOUT_S
            _, pending = await asyncio.wait(self._agent_tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*self._agent_tasks, return_exceptions=True)
        if self.core is not None:
            await self.core.stop(grace=0 if force else None)

    async def _stop_gateway(self, force: bool) -> None:
        proc = self.gateway
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGKILL if force else signal.SIGTERM)
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


def _worker_label(kind: str, wanted: str) -> str:
    """The GPU's name, and its precision where fp8 was asked for (it may be bf16)."""
    name = find_gpu(kind).name
    return name if wanted == "bf16" else f"{name} ({worker_precision(kind, wanted)})"


def banner(cloud: Cloud) -> str:
    g, c = cloud.gateway_settings, cloud.settings.core
    base = f"http://{g.http_host}:{g.http_port}"
    gpus = ", ".join(_worker_label(k, cloud.settings.sim_precision) for k in cloud.settings.gpus)
    return "\n".join(
        [
            "gpucloud is up",
            f"  dashboard   {base}/",
            f"  OpenAI API  {base}/v1",
            f"  gRPC        {g.core_address}",
            f"  login       {_login(c)}",
            f"  workers     {len(cloud.settings.gpus)} simulated: {gpus or 'none'}",
            f"  data        {c.data_dir.resolve()}",
            f"  add a GPU   gpucloud worker --core {g.core_address} --token {c.join_token}",
            "Press Ctrl-C to stop.",
        ]
    )


async def serve(settings: UpSettings, stop: asyncio.Event) -> int:
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
        try:
            await cloud.stop(force=_cancelled())
        except asyncio.CancelledError:  # a second signal: stop again, without grace
            await cloud.stop(force=True)
            raise
        print("gpucloud stopped", flush=True)


def _cancelled() -> bool:
    """Whether the running task is being cancelled (a second signal forces the exit)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse(sys.argv[1:] if argv is None else argv, os.environ)
    setup_logging(settings.gateway.log_level, settings.gateway.log_format)
    stop = asyncio.Event()
    return run(run_until_signalled(serve(settings, stop), stop.set))


if __name__ == "__main__":
    sys.exit(main())
