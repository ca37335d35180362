"""`gpucloud worker`: one worker agent process; SIGTERM or Ctrl-C drains it."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from gpucloud_worker.agent import WorkerAgent
from gpucloud_worker.backend import Backend
from gpucloud_worker.config import WorkerSettings

DISCOVER = "discover"


def parser() -> argparse.ArgumentParser:
    env = os.environ
    p = argparse.ArgumentParser(prog="gpucloud worker", description="Run a gpucloud worker agent.")
    p.add_argument(
        "--core", default=env.get("GPUCLOUD_CORE", "127.0.0.1:50051"), help="core HOST:PORT"
    )
    p.add_argument("--token", default=env.get("GPUCLOUD_JOIN_TOKEN"), help="cluster join token")
    p.add_argument("--tls", action="store_true", help="dial the core over TLS (system roots)")
    p.add_argument(
        "--tls-ca",
        type=Path,
        default=env.get("GPUCLOUD_TLS_CA"),
        help="CA or self-signed certificate (PEM) to trust for the core; implies --tls",
    )
    p.add_argument("--worker-id", default=env.get("GPUCLOUD_WORKER_ID"))
    p.add_argument("--name", default=env.get("GPUCLOUD_WORKER_NAME", socket.gethostname()))
    p.add_argument("--backend", choices=("sim", "openai"), default="sim")
    p.add_argument("--heartbeat", type=float, default=5.0, help="seconds between heartbeats")
    p.add_argument(
        "--drain-timeout", type=float, default=300.0, help="seconds SIGTERM waits for tasks"
    )
    sim = p.add_argument_group("sim backend")
    sim.add_argument("--gpu", default="a100", help="simulated GPU: a100, h100, rtx4090, a6000")
    sim.add_argument("--gpu-count", type=int, default=1)
    sim.add_argument("--speed", type=float, default=1.0, help="x real time; 0 = no delay")
    sim.add_argument("--seed", type=int, default=0)
    up = p.add_argument_group("openai backend")
    up.add_argument("--upstream", help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1")
    up.add_argument("--upstream-key", default=env.get("GPUCLOUD_UPSTREAM_KEY"))
    up.add_argument("--slots", type=int, default=8, help="concurrent requests to the upstream")
    p.add_argument(
        "--models",
        type=model_ids,
        help=f"comma-separated model ids, or {DISCOVER!r} (the default): "
        "sim: what fits; openai: what the upstream lists at /models",
    )
    return p


def model_ids(value: str) -> tuple[str, ...] | None:
    """`--models`: the ids to offer, or None for the backend's own choice (`discover`)."""
    if value.strip() == DISCOVER:
        return None
    ids = tuple(m.strip() for m in value.split(",") if m.strip())
    if not ids:
        raise argparse.ArgumentTypeError(f"no model id in {value!r}")
    return ids


def build_backend(args: argparse.Namespace) -> Backend:
    models: tuple[str, ...] | None = args.models
    if args.backend == "openai":
        from gpucloud_worker.openai_backend import OpenAIBackend

        if not args.upstream:
            raise SystemExit("gpucloud worker: --backend openai needs --upstream URL")
        return OpenAIBackend(
            args.upstream, api_key=args.upstream_key, models=models, slots=args.slots
        )
    from gpucloud_worker.sim import SimBackend

    return SimBackend(
        args.gpu, models=models, speed=args.speed, seed=args.seed, gpu_count=args.gpu_count
    )


def settings(args: argparse.Namespace) -> WorkerSettings:
    if not args.token:
        raise SystemExit("gpucloud worker: a join token is needed (--token or GPUCLOUD_JOIN_TOKEN)")
    if args.tls_ca is not None and not args.tls_ca.is_file():
        raise SystemExit(f"gpucloud worker: --tls-ca {args.tls_ca}: no such file")
    kind = args.gpu if args.backend == "sim" else args.backend
    worker_id = args.worker_id or f"{args.name}-{kind}"
    return WorkerSettings(
        core_address=args.core,
        join_token=args.token,
        worker_id=worker_id,
        name=args.name,
        heartbeat_interval_s=args.heartbeat,
        drain_timeout_s=args.drain_timeout,
        tls=args.tls,
        tls_ca=args.tls_ca,
    )


async def serve(agent: WorkerAgent) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, agent.drain)
    await agent.run()


def main(argv: Sequence[str] | None = None) -> int:
    from gpucloud_common.logs import setup_logging

    args = parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    setup_logging()
    agent = WorkerAgent(settings(args), build_backend(args))
    asyncio.run(serve(agent))
    return 0
