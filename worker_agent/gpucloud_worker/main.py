"""`gpucloud worker`: one worker agent process; SIGTERM or Ctrl-C drains it, a second stops it."""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Mapping, Sequence

from gpucloud_common.logs import setup_logging
from gpucloud_common.loop import run
from gpucloud_common.settings import add_arguments, load, new_parser
from gpucloud_common.signals import run_until_signalled
from gpucloud_worker.agent import WorkerAgent
from gpucloud_worker.backend import Backend
from gpucloud_worker.config import OPENAI_OPTIONS, SIM_OPTIONS, WorkerOptions, WorkerSettings


def parser() -> argparse.ArgumentParser:
    cli = new_parser("gpucloud worker", "Run a gpucloud worker agent.")
    add_arguments(cli, WorkerOptions, exclude=(*SIM_OPTIONS, *OPENAI_OPTIONS))
    add_arguments(cli, WorkerOptions, only=SIM_OPTIONS, title="sim backend")
    add_arguments(cli, WorkerOptions, only=OPENAI_OPTIONS, title="openai backend")
    return cli


def options(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> WorkerOptions:
    """Flags over `env` (the process environment unless given) over defaults."""
    try:
        return load(WorkerOptions, args, os.environ if env is None else env)
    except ValueError as err:
        raise SystemExit(f"gpucloud worker: {err}") from None


def settings(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> WorkerSettings:
    try:
        return options(args, env).settings(socket.gethostname())
    except ValueError as err:
        raise SystemExit(f"gpucloud worker: {err}") from None


def build_backend(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Backend:
    opts = options(args, env)
    if opts.backend == "openai":
        from gpucloud_worker.backend import Capabilities
        from gpucloud_worker.openai_backend import OpenAIBackend

        if not opts.upstream:
            raise SystemExit("gpucloud worker: --backend openai needs --upstream URL")
        return OpenAIBackend(
            opts.upstream,
            api_key=opts.upstream_key,
            models=opts.models,
            slots=opts.slots,
            capabilities=Capabilities(**dict.fromkeys(opts.capabilities, True)),
            embedding_models={m.id: m.dimensions for m in opts.embedding_models},
            max_context=opts.max_context,
        )
    from gpucloud_worker.sim import SimBackend

    try:
        return SimBackend(
            opts.gpu,
            models=opts.models,
            speed=opts.speed,
            seed=opts.seed,
            gpu_count=opts.gpu_count,
            precision=opts.precision,
        )
    except ValueError as err:  # an unknown GPU or model, FP8 without FP8 cores, no fit
        raise SystemExit(f"gpucloud worker: {err}") from None


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    env = dict(os.environ)
    agent = WorkerAgent(settings(args, env), build_backend(args, env))
    setup_logging()
    return run(run_until_signalled(agent.run(), agent.drain))


if __name__ == "__main__":
    sys.exit(main())
