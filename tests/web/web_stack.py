"""Helpers of the browser tests: the `gpucloud up` under test, signing in, screenshots.

Playwright's own browser download cannot work here, so the tests drive the Debian
`chromium` package; without it they skip with the reason, and fail instead under CI=true.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-output" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ADMIN_EMAIL = "admin@gpucloud.local"
ADMIN_PASSWORD = "admin123"
JOIN_TOKEN = "web-test-join-token"
# Fast enough for short tests, slow enough that a long answer is still streaming when Stop is hit.
SIM_SPEED = 5.0
UP_WORKERS = 4
VIEWPORT = {"width": 1360, "height": 900}

expect.set_options(timeout=15_000)


def require_chromium() -> None:
    if CHROMIUM.exists():
        return
    reason = f"{CHROMIUM} is missing: install the Debian package `chromium` to run browser tests"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true)", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def gpucloud(*args: str) -> list[str]:
    return [sys.executable, "-m", "gpucloud_launcher.cli", *args]


def stop(process: subprocess.Popen[bytes], grace_s: float = 20.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `grace_s`."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class Stack:
    """A running `gpucloud up` and what the tests need to reach it."""

    url: str
    grpc_port: int
    log: Path
    process: subprocess.Popen[bytes]
    password: str = ADMIN_PASSWORD  # a test may change it; later sign-ins follow
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def jwt(self) -> str:
        body = {"email": ADMIN_EMAIL, "password": self.password}
        answer = httpx.post(f"{self.url}/api/auth/login", json=body, timeout=10)
        answer.raise_for_status()
        return str(answer.json()["token"])

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.jwt()}"}
        answer = httpx.request(method, f"{self.url}{path}", headers=headers, timeout=10, **kwargs)
        answer.raise_for_status()
        return answer.json()

    def complete(self, secret: str, body: dict[str, Any]) -> httpx.Response:
        """A chat completion with an API key, as a client of the cloud sends it."""
        headers = {"Authorization": f"Bearer {secret}"}
        return httpx.post(f"{self.url}/v1/chat/completions", json=body, headers=headers, timeout=60)

    def start_worker(self, name: str, gpu: str = "h100") -> subprocess.Popen[bytes]:
        """An extra sim worker joining the running core, logging next to the stack's log."""
        log = self.log.with_name(f"worker-{name}.log").open("wb")
        command = gpucloud(
            "worker",
            *("--core", f"127.0.0.1:{self.grpc_port}", "--token", JOIN_TOKEN),
            *("--backend", "sim", "--gpu", gpu, "--name", name),
            *("--speed", str(SIM_SPEED), "--heartbeat", "1"),
        )
        with log:
            process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        self.workers.append(process)
        return process


def wait_ready(stack: Stack, timeout_s: float = 90.0) -> None:
    """Until /readyz answers and every simulated worker of `up` is online."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if stack.process.poll() is not None:
            pytest.fail(f"gpucloud up exited with {stack.process.returncode}:\n{stack.log_tail()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{stack.url}/readyz", timeout=2).status_code == 200:
                workers = stack.api("GET", "/api/monitoring/workers")["workers"]
                if sum(w["state"] == "online" for w in workers) >= UP_WORKERS:
                    return
        time.sleep(0.5)
    pytest.fail(f"gpucloud up not ready within {timeout_s:.0f} s:\n{stack.log_tail()}")


@dataclass
class PageProblems:
    """What a page did wrong besides the assertion under test."""

    errors: list[str] = field(default_factory=list)
    foreign_requests: list[str] = field(default_factory=list)


def sign_in(page: Page, stack: Stack) -> None:
    page.goto("/")
    page.get_by_test_id("login-email").fill(ADMIN_EMAIL)
    page.get_by_test_id("login-password").fill(stack.password)
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("page-overview")).to_be_visible()


def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")  # sticky headers draw mid-page otherwise
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True, animations="disabled")
