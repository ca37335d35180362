"""The live driver: runs a GpuEngine's timeline in real time scaled by the sim speed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from gpucloud_sim.engine import GpuEngine
from gpucloud_sim.sched import Seq

_log = logging.getLogger(__name__)


class LiveClock:
    """Simulated seconds as real seconds times `speed`; speed 0 follows the engine alone."""

    def __init__(self, speed: float, engine: GpuEngine) -> None:
        self.speed = speed
        self._engine = engine
        self._origin = time.monotonic() - engine.now / speed if speed else 0.0

    def now(self) -> float:
        if not self.speed:
            return self._engine.now
        return (time.monotonic() - self._origin) * self.speed

    async def sleep_until(self, simulated: float) -> None:
        """Waits for the real time of `simulated`; speed 0 only yields to the loop.

        Deadlines are absolute, so lateness of the event loop on one step is caught
        up on the next instead of adding up.
        """
        if not self.speed:
            await asyncio.sleep(0)
            return
        await asyncio.sleep(max(0.0, self._origin + simulated / self.speed - time.monotonic()))


class LiveDriver:
    """One task per engine, started when work arrives and ended when none is left.

    Each loop computes a step, sleeps its duration and then hands the step's tokens
    to the sequences' `on_token` callbacks. Sequences added meanwhile join at the
    next step, as in a real engine.
    """

    def __init__(self, engine: GpuEngine, speed: float) -> None:
        self.engine = engine
        self.clock = LiveClock(speed, engine)
        self._task: asyncio.Task[None] | None = None
        # Set when a step raised: the engine's state is not to be trusted any more.
        self.error: Exception | None = None
        # Sequences given a token by the step being slept through, not yet told.
        self._undelivered: list[Seq] = []

    def wake(self) -> None:
        """Starts the driver if it is not running (call after adding sequences)."""
        if self._task is None or self._task.done():
            self.engine.advance_to(self.clock.now())
            self._task = asyncio.get_running_loop().create_task(self._run())

    def settle(self) -> None:
        """Stops the driver at once if no sequence is left (call after aborting).

        A sequence that finished in the step being slept through still waits for its
        last token, so the driver stays until that is delivered.
        """
        waiting = any(seq.on_token is not None for seq in self._undelivered)
        if self._task is not None and not self.engine.has_work() and not waiting:
            self._task.cancel()
            self._task = None

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        try:
            await self._steps()
        except Exception as error:  # a bug in the engine: fail its generations, not hang them
            _log.exception("the simulated engine failed; its generations end with an error")
            self.error = error
            for seq in self.engine.live():
                if seq.on_token is not None:
                    seq.on_token(seq)

    async def _steps(self) -> None:
        while True:
            result = self.engine.step()
            if result is None:
                return
            self._undelivered = result.emitted
            await self.clock.sleep_until(self.engine.now)
            self._undelivered = []
            for seq in result.emitted:
                if seq.on_token is not None:
                    seq.on_token(seq)
