"""The importable Python client (gpucloud_gateway.client) against the gateway and a fake core."""

from __future__ import annotations

import pytest
from gateway_fakes import MODEL

from gpucloud_gateway.client import AsyncClient, GpucloudError

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
