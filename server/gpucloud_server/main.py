"""`gpucloud server`: the core process; SIGTERM or Ctrl-C stops it gracefully, twice forces it."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence

from gpucloud_common.logs import setup_logging
from gpucloud_common.loop import run
from gpucloud_common.signals import run_until_signalled
from gpucloud_server import config
from gpucloud_server.server import CoreServer


async def serve(core: CoreServer, stop: asyncio.Event) -> None:
    try:
        port = await core.start()
        print(f"gpucloud core listening on {core.settings.grpc_host}:{port}", flush=True)
        await stop.wait()
        await core.stop()
    except asyncio.CancelledError:  # a second signal: running tasks get no more grace
        await core.stop(grace=0)
        raise


def main(argv: Sequence[str] | None = None) -> int:
    cli = config.parser()
    args = cli.parse_args(sys.argv[1:] if argv is None else list(argv))
    try:
        settings = config.from_sources(args, os.environ)
        settings.check()
    except ValueError as err:
        cli.error(str(err))
    setup_logging()
    stop = asyncio.Event()
    return run(run_until_signalled(serve(CoreServer(settings), stop), stop.set))


if __name__ == "__main__":
    sys.exit(main())
