"""Browser-test fixtures: `gpucloud up` on free ports, the system Chromium, signed-in pages."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Request, sync_playwright
from web_stack import (
    CHROMIUM,
    CHROMIUM_ARGS,
    JOIN_TOKEN,
    ROOT,
    SIM_SPEED,
    VIEWPORT,
    PageProblems,
    Stack,
    free_port,
    gpucloud,
    require_chromium,
    sign_in,
    stop,
    wait_ready,
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The whole cloud from one command, as a user starts it, on free ports."""
    require_chromium()
    home = tmp_path_factory.mktemp("gpucloud-up")
    http_port, grpc_port = free_port(), free_port()
    log = home / "up.log"
    env = {**os.environ, "GPUCLOUD_JOIN_TOKEN": JOIN_TOKEN, "GPUCLOUD_LOG_LEVEL": "warning"}
    command = gpucloud(
        "up",
        *("--http-port", str(http_port), "--grpc-port", str(grpc_port)),
        *("--data-dir", str(home / "data"), "--sim-speed", str(SIM_SPEED)),
    )
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    running = Stack(
        url=f"http://127.0.0.1:{http_port}", grpc_port=grpc_port, log=log, process=process
    )
    try:
        wait_ready(running)
        yield running
    finally:
        for worker in running.workers:
            stop(worker)
        stop(process)


@pytest.fixture(scope="module")
def traffic(stack: Stack) -> dict[str, Any]:
    """Some finished requests through a key of their own, so queue and metrics have data."""
    created = stack.api("POST", "/api/keys", json={"name": "background traffic"})
    secret = created["secret"]
    headers = {"Authorization": f"Bearer {secret}"}
    listed = httpx.get(f"{stack.url}/v1/models", headers=headers, timeout=10).json()["data"]
    models = [m for m in listed if m["capabilities"]["kind"] == "chat"]

    def ask(i: int) -> int:
        body = {
            "model": models[i % len(models)]["id"],
            "messages": [{"role": "user", "content": f"Tell me about GPUs, part {i}."}],
            "max_tokens": 24 + 8 * (i % 4),
        }
        return stack.complete(secret, body).status_code

    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = list(pool.map(ask, range(18)))
    assert statuses == [200] * len(statuses), statuses
    return {"key": created["key"], "models": [m["id"] for m in models]}


@pytest.fixture(scope="module")
def browser(stack: Stack) -> Iterator[Browser]:
    require_chromium()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser, stack: Stack) -> Iterator[Page]:
    """A fresh tab (its own sessionStorage); fails the test on uncaught script errors or on any
    request leaving the gateway (the dashboard must work offline: no CDN)."""
    context = browser.new_context(viewport=VIEWPORT, base_url=stack.url)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=stack.url)
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    problems = PageProblems()

    def on_console(message: ConsoleMessage) -> None:
        # Failed loads (401 after revocation, 503 in error-state tests) are expected noise.
        if message.type == "error" and "Failed to load resource" not in message.text:
            problems.errors.append(f"console: {message.text}")

    def on_request(request: Request) -> None:
        if not request.url.startswith((stack.url, "data:", "blob:")):
            problems.foreign_requests.append(request.url)

    tab.on("console", on_console)
    tab.on("pageerror", lambda error: problems.errors.append(f"pageerror: {error}"))
    tab.on("request", on_request)
    yield tab
    context.close()
    assert problems.errors == [], problems.errors
    assert problems.foreign_requests == [], problems.foreign_requests


@pytest.fixture
def signed_in(page: Page, stack: Stack) -> Page:
    sign_in(page, stack)
    return page
