"""The `gpucloud` command: dispatches to each part's own main()."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version

DISTRIBUTION = "gpucloud"

USAGE = """usage: gpucloud [-h] [-V] COMMAND [options]

options:
  -h, --help     show this message; `gpucloud COMMAND --help` shows a command's options
  -V, --version  print the installed version of gpucloud

commands:
  up        run the whole cloud on this machine: core, gateway, simulated workers
  server    run the core gRPC server
  gateway   run the HTTP gateway
  worker    run a worker agent
  sim       simulator tools: `gpucloud sim profile` benchmarks a simulated GPU
  plan      the cheapest simulated fleet that meets latency SLOs for a workload
"""


def _command(name: str) -> Callable[[Sequence[str]], int] | None:
    # Imported lazily so `gpucloud worker` does not load the server's dependencies.
    if name == "up":
        from gpucloud_launcher.up import main as up

        return up
    if name == "server":
        from gpucloud_server.main import main as server

        return server
    if name == "gateway":
        from gpucloud_gateway.main import main as gateway

        return gateway
    if name == "worker":
        from gpucloud_worker.main import main as worker

        return worker
    if name == "sim":
        from gpucloud_launcher.sim_commands import sim_main

        return sim_main
    if name == "plan":
        from gpucloud_launcher.plan_command import plan_main

        return plan_main
    return None


def installed_version() -> str:
    """The version of the installed distribution, as pip shows it."""
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help", "help"}:
        print(USAGE, end="")
        return 0 if args else 2
    if args[0] in {"-V", "--version"}:
        print(f"{DISTRIBUTION} {installed_version()}")
        return 0
    command = _command(args[0])
    if command is None:
        print(f"gpucloud: unknown command '{args[0]}'\n\n{USAGE}", end="", file=sys.stderr)
        return 2
    return command(args[1:])


if __name__ == "__main__":
    sys.exit(main())
