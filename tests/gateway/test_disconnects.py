"""A client that leaves cancels its gRPC call, streaming or not."""

from __future__ import annotations

import asyncio

import httpx
import orjson
from gateway_fakes import GOOD_KEY, FakeCore

BODY = {"model": "slow", "messages": [{"role": "user", "content": "Hi"}]}


async def test_closing_a_stream_cancels_the_core_call(live_url: str, fake_core: FakeCore) -> None:
    async with (
        httpx.AsyncClient(base_url=live_url) as http,
        http.stream(
            "POST",
            "/v1/chat/completions",
            json={**BODY, "stream": True},
            headers={"authorization": f"Bearer {GOOD_KEY}"},
        ) as response,
    ):
        async for line in response.aiter_lines():
            if line.startswith("data: ") and '"content":"."' in line:
                break
    await asyncio.wait_for(
        fake_core.seen.cancelled.wait(), 10.0
    )  # a deadline against hangs, not a timing claim


async def test_leaving_a_non_streaming_request_cancels_the_core_call(
    live_url: str, fake_core: FakeCore
) -> None:
    host, port = live_url.removeprefix("http://").split(":")
    body = orjson.dumps(BODY)
    request = (
        f"POST /v1/chat/completions HTTP/1.1\r\nhost: {host}\r\n"
        f"authorization: Bearer {GOOD_KEY}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode() + body
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(request)
    await writer.drain()
    await asyncio.wait_for(
        fake_core.seen.slow_started.wait(), 10.0
    )  # a deadline against hangs, not a timing claim
    writer.transport.abort()  # RST, as a killed client would
    await asyncio.wait_for(
        fake_core.seen.cancelled.wait(), 10.0
    )  # a deadline against hangs, not a timing claim
    del reader
