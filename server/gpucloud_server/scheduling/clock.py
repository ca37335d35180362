"""The scheduler's sense of time, injected so tests can move it by hand."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Clock:
    """`monotonic` times waits, deadlines and durations; `wall` stamps what leaves the
    process (usage records, `created` in replies, worker timestamps on the dashboard)."""

    monotonic: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
