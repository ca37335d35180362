"""A process main under run_until_signalled, for the signal tests.

`graceful`: the first signal stops it at once. `stubborn`: its graceful stop never
ends, so only a second signal gets it out. It prints `ready` once its handlers are
installed and `stopping` once the first signal reached it.
"""

from __future__ import annotations

import asyncio
import sys

from gpucloud_common.logs import setup_logging
from gpucloud_common.loop import run
from gpucloud_common.signals import run_until_signalled


async def serve(stop: asyncio.Event, stubborn: bool) -> int:
    print("ready", flush=True)
    await stop.wait()
    print("stopping", flush=True)
    if stubborn:
        await asyncio.Event().wait()
    return 0


if __name__ == "__main__":
    setup_logging("info", "json")
    stop = asyncio.Event()
    sys.exit(run(run_until_signalled(serve(stop, sys.argv[1] == "stubborn"), stop.set)))
