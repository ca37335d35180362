"""SIGINT/SIGTERM in real processes: the first stops gracefully, a second forces the exit."""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import pytest

HERE = Path(__file__).parent
# Generous: these bound a hang, they do not measure anything.
DEADLINE_S = 60


class Lines:
    """A child's output, line by line, read on a thread so waits have deadlines."""

    def __init__(self, stream: IO[str]) -> None:
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def wait_for(self, needle: str) -> str:
        while True:
            line = self._lines.get(timeout=DEADLINE_S)
            if line is None:
                pytest.fail(f"output ended without {needle!r}: {self.seen}")
            self.seen.append(line)
            if needle in line:
                return line

    def rest(self) -> str:
        """Everything seen, and what is left once the child has exited."""
        while (line := self._lines.get(timeout=DEADLINE_S)) is not None:
            self.seen.append(line)
        return "\n".join(self.seen)


@contextmanager
def started(*command: str) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, *command], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(DEADLINE_S)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_the_first_signal_stops_the_main_task_gracefully() -> None:
    with started(str(HERE / "signalled_process.py"), "graceful") as proc:
        assert proc.stdout is not None and proc.stderr is not None
        out, err = Lines(proc.stdout), Lines(proc.stderr)
        out.wait_for("ready")
        proc.send_signal(signal.SIGINT)
        out.wait_for("stopping")
        assert proc.wait(DEADLINE_S) == 0
        err.wait_for("SIGINT received: stopping gracefully")


def test_a_second_signal_forces_out_a_stop_that_hangs() -> None:
    with started(str(HERE / "signalled_process.py"), "stubborn") as proc:
        assert proc.stdout is not None and proc.stderr is not None
        out, err = Lines(proc.stdout), Lines(proc.stderr)
        out.wait_for("ready")
        proc.send_signal(signal.SIGINT)
        out.wait_for("stopping")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(DEADLINE_S) == 128 + signal.SIGINT
        err.wait_for("SIGINT received again: forcing exit")
        assert "Traceback" not in err.rest()


def test_sigterm_stops_the_core_server_process(tmp_path: Path) -> None:
    with started(
        "-m", "gpucloud_launcher.cli", "server", "--grpc-port", "0", "--data-dir", str(tmp_path)
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        out, err = Lines(proc.stdout), Lines(proc.stderr)
        out.wait_for("gpucloud core listening on")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(DEADLINE_S) == 0
        err.wait_for("SIGTERM received: stopping gracefully")
