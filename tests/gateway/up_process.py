"""`gpucloud up` as a subprocess on free ports, for end-to-end tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ADMIN_EMAIL = "admin@gpucloud.local"
ADMIN_PASSWORD = "admin123"
READY_LINE = "Press Ctrl-C to stop."


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningCloud:
    proc: subprocess.Popen[str]
    base_url: str
    grpc_address: str
    data_dir: Path
    stderr_path: Path
    stdout_lines: list[str]

    @property
    def openai_url(self) -> str:
        return f"{self.base_url}/v1"

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, as a supervisor would; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


def _pump(stream: object, lines: list[str], ready: threading.Event) -> None:
    for line in stream:  # type: ignore[attr-defined]
        lines.append(line.rstrip("\n"))
        if line.startswith(READY_LINE):
            ready.set()


@contextlib.contextmanager
def running_cloud(data_dir: Path, *args: str, timeout: float = 60.0) -> Iterator[RunningCloud]:
    http_port, grpc_port = free_port(), free_port()
    stderr_path = data_dir / "up.stderr.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GPUCLOUD_LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1"}
    command = [
        sys.executable, "-m", "gpucloud_launcher.cli", "up",
        "--http-port", str(http_port), "--grpc-port", str(grpc_port),
        "--data-dir", str(data_dir / "data"), *args,
    ]  # fmt: skip
    with stderr_path.open("w") as stderr:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
    lines: list[str] = []
    ready = threading.Event()
    reader = threading.Thread(target=_pump, args=(proc.stdout, lines, ready), daemon=True)
    reader.start()
    cloud = RunningCloud(
        proc, f"http://127.0.0.1:{http_port}", f"127.0.0.1:{grpc_port}", data_dir / "data",
        stderr_path, lines,
    )  # fmt: skip
    deadline = time.monotonic() + timeout
    try:
        while not ready.wait(0.1):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gpucloud up did not start:\n{cloud.stderr()[-4000:]}")
        yield cloud
    finally:
        cloud.stop()
        reader.join(5)
        if proc.stdout is not None:
            proc.stdout.close()
