"""SIGINT and SIGTERM for a process's main task: the first stops it gracefully, a second forces it.

Like uvicorn's Server: a supervisor's SIGTERM (or Ctrl-C) lets work in flight finish;
an impatient second one cancels the main task, so the process exits at once.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger("gpucloud.signals")

SIGNALS = (signal.SIGINT, signal.SIGTERM)


async def run_until_signalled(
    main: Coroutine[Any, Any, int | None], stop: Callable[[], object]
) -> int:
    """Runs `main`; the first SIGINT/SIGTERM calls `stop`, which should make `main`
    return once it has wound down; another cancels `main`. Returns `main`'s exit
    status (None counts as 0), or 128 + the signal number when forced, as a shell would."""
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(main, name="main")
    received: list[signal.Signals] = []

    def on_signal(sig: signal.Signals) -> None:
        if task.done():  # main has just returned: nothing left to stop
            return
        received.append(sig)
        if len(received) == 1:
            log.info("%s received: stopping gracefully (send it again to force)", sig.name)
            stop()
        else:
            log.warning("%s received again: forcing exit", sig.name)
            task.cancel()

    for sig in SIGNALS:
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        return await task or 0
    except asyncio.CancelledError:
        if len(received) < 2:
            raise
        return 128 + received[-1]
    finally:
        for sig in SIGNALS:
            loop.remove_signal_handler(sig)
