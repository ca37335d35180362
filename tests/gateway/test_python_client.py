"""The importable Python client (gpucloud_gateway.client) against the gateway and a fake core."""

from __future__ import annotations

import asyncio
import inspect

import pytest
from gateway_fakes import EMBEDDER, MODEL, FakeCore

from gpucloud_gateway.client import AsyncClient, Client, GpucloudError

HELLO = [{"role": "user", "content": "Hi"}]


async def test_login_key_chat_and_stream(live_url: str) -> None:
    async with AsyncClient(live_url) as cloud:
        session = await cloud.login("admin@test", "admin123")
        assert session["user"]["role"] == "admin"
        assert (await cloud.me())["email"] == "admin@test"
        created = await cloud.create_key("mine", rateLimitPerMinute=30)
        assert cloud.api_key == created["secret"]
        assert [k["name"] for k in await cloud.list_keys()] == ["mine"]
        # The fake core only knows its fixed test key.
        cloud.api_key = "sk-good"
        assert [m["id"] for m in await cloud.models()] == [MODEL]
        reply = await cloud.chat(HELLO)
        assert reply["choices"][0]["message"]["content"] == "Hello world"
        chunks = [c async for c in cloud.stream(HELLO, stream_options={"include_usage": True})]
        text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
        assert text == "Hello world"
        assert chunks[-1]["usage"]["total_tokens"] == 8
        completion = await cloud.complete("Once", max_tokens=5)
        assert completion["choices"][0]["text"] == "Hello world"
        vectors = await cloud.embed(["a", "b"], EMBEDDER, encoding_format="float")
        assert [d["index"] for d in vectors["data"]] == [0, 1]
        revoked = await cloud.revoke_key(created["key"]["id"])
        assert revoked["revokedAt"] is not None
        assert (await cloud.workers())[0]["id"] == "w-1"


async def test_errors_carry_status_code_and_request_id(live_url: str) -> None:
    async with AsyncClient(live_url, api_key="sk-good") as cloud:
        with pytest.raises(GpucloudError) as caught:
            await cloud.chat(HELLO, model="forbidden")
        assert caught.value.status == 403
        assert caught.value.code == "permission_denied"
        assert caught.value.request_id
        with pytest.raises(GpucloudError, match="went away mid-stream"):
            async for _ in cloud.stream(HELLO, model="fail-mid"):
                pass
        with pytest.raises(GpucloudError) as caught:
            await cloud.list_keys()
        assert caught.value.status == 401  # no login yet: refused before any request


def _public(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(getattr(cls, name))
        for name in dir(cls)
        if not name.startswith("_") and callable(getattr(cls, name))
    }


def test_both_clients_have_the_same_methods_with_the_same_signatures() -> None:
    sync, asynchronous = _public(Client), _public(AsyncClient)
    # Closing follows httpx: close() on the blocking client, aclose() on the async one.
    assert sync.pop("close") == asynchronous.pop("aclose")
    assert sync.keys() == asynchronous.keys()
    for name, signature in sync.items():
        assert signature.parameters == asynchronous[name].parameters, name


async def test_async_client_reaches_every_management_endpoint(
    live_url: str, fake_core: FakeCore
) -> None:
    async with AsyncClient(live_url) as cloud:
        await cloud.login("admin@test", "admin123")
        assert (await cloud.queue())["byPriority"] == [{"priority": 5, "depth": 3}]
        metrics = await cloud.metrics(window_minutes=30, bucket_seconds=10)
        assert metrics["buckets"][0]["requests"] == 30  # the fake echoes the window
        user = await cloud.change_password("admin123", "a-new-password")
        assert user["email"] == "admin@test"
        assert fake_core.auth.passwords_changed == 1


async def test_blocking_client_sends_the_same_requests(live_url: str) -> None:
    def scenario() -> None:
        with Client(live_url) as cloud:
            cloud.login("admin@test", "admin123")
            assert cloud.metrics(window_minutes=30)["buckets"][0]["requests"] == 30
            created = cloud.create_key("mine", rateLimitPerMinute=30)
            assert cloud.api_key == created["secret"]
            cloud.api_key = "sk-good"
            assert cloud.chat(HELLO)["model"] == MODEL  # the default model, learnt first
            assert cloud.model == MODEL
            with pytest.raises(GpucloudError) as caught:
                cloud.create_key("fast", rateLimitPerMinute=10_001)
            assert (caught.value.status, caught.value.param) == (400, "rateLimitPerMinute")

    # The gateway serves on this test's event loop: block another thread, not the loop.
    await asyncio.to_thread(scenario)
