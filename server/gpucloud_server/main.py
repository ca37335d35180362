"""`gpucloud server`: the core process; SIGTERM or Ctrl-C shuts it down gracefully."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Sequence

from gpucloud_server import config
from gpucloud_server.server import CoreServer


async def serve(core: CoreServer) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    port = await core.start()
    print(f"gpucloud core listening on {core.settings.grpc_host}:{port}", flush=True)
    await stop.wait()
    await core.stop()


def main(argv: Sequence[str] | None = None) -> int:
    from gpucloud_common.logs import setup_logging

    settings = config.parse(sys.argv[1:] if argv is None else argv)
    try:
        settings.check()
    except ValueError as err:
        print(f"gpucloud server: {err}", file=sys.stderr)
        return 2
    setup_logging()
    asyncio.run(serve(CoreServer(settings)))
    return 0
