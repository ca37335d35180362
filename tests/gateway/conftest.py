"""Gateway fixtures: a fake core on port 0, the real app over httpx, and a live uvicorn."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import grpc
import httpx
import pytest
from gateway_fakes import FakeCore, start_fake_core
from starlette.applications import Starlette

from gpucloud_gateway.app import create_app
from gpucloud_gateway.config import GatewaySettings
from gpucloud_gateway.main import core_channel, server


@pytest.fixture
async def fake_core() -> AsyncIterator[FakeCore]:
    core = await start_fake_core()
    yield core
    await core.server.stop(None)


@pytest.fixture
def settings(fake_core: FakeCore) -> GatewaySettings:
    return GatewaySettings(core_address=fake_core.address, keepalive_s=0.2, http_port=0)


@pytest.fixture
async def channel(settings: GatewaySettings) -> AsyncIterator[grpc.aio.Channel]:
    ch = core_channel(settings.core_address)
    yield ch
    await ch.close()


@pytest.fixture
def app(settings: GatewaySettings, channel: grpc.aio.Channel) -> Starlette:
    return create_app(settings, channel)


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=("10.1.2.3", 5555))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as c:
        yield c


@pytest.fixture
async def live_url(settings: GatewaySettings) -> AsyncIterator[str]:
    """The gateway served by uvicorn on a free port, for tests that need real sockets."""
    channel = core_channel(settings.core_address)
    srv = server(dataclasses.replace(settings, http_port=0), channel)
    task = asyncio.create_task(srv.serve())
    while not srv.started:
        await asyncio.sleep(0.01)
        if task.done():
            task.result()
    port = srv.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    await task
    await channel.close()
