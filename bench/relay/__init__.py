"""A minimal gateway -> core -> worker relay over grpc.aio: the baseline the product is held to.

Nothing but forwarding: no auth, limits, queue, usage, logs or metrics. It speaks the
product's protos so each hop moves the same messages, and it imports nothing of the
product's scheduler or identity.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


def run(main: Coroutine[Any, Any, None]) -> None:
    """Runs `main` on uvloop when it is installed, as `gpucloud up` does."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)
