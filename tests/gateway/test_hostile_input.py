"""Bytes no well-behaved client sends, over a real socket: a 400 in the envelope, never a 500.

httpx refuses to send most of these, so the requests are written by hand to a live uvicorn.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlsplit

import orjson
import pytest
from gateway_fakes import ADMIN_JWT, GOOD_KEY, MODEL

CHAT = orjson.dumps({"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]})
LOGIN = orjson.dumps({"email": "admin@gpucloud.local", "password": "admin123"})


async def raw_exchange(url: str, head: bytes, body: bytes = b"") -> tuple[int, bytes, bytes]:
    """Sends one request written byte for byte; returns its status, headers and body."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        length = b"Content-Length: %d\r\n" % len(body) if body else b""
        writer.write(head + b"Host: gateway\r\n" + length + b"Connection: close\r\n\r\n" + body)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    headers, _, content = answer.partition(b"\r\n\r\n")
    return int(headers.split(b" ", 2)[1]), headers, content


def request(line: str, *headers: bytes) -> bytes:
    return line.encode() + b" HTTP/1.1\r\n" + b"".join(h + b"\r\n" for h in headers)


NON_ASCII_BEARER = b"Authorization: Bearer \xe9"
CASES = {
    "models": (request("GET /v1/models", NON_ASCII_BEARER), b""),
    "model": (request("GET /v1/models/sim-small", NON_ASCII_BEARER), b""),
    "chat": (request("POST /v1/chat/completions", NON_ASCII_BEARER), CHAT),
    "chat-alias": (request("POST /api/v1/chat/completions", NON_ASCII_BEARER), CHAT),
    "chat-utf8-key": (
        request("POST /v1/chat/completions", "Authorization: Bearer sk-\u00e9".encode()),
        CHAT,
    ),
    "chat-tab-in-key": (request("POST /v1/chat/completions", b"Authorization: Bearer a\tb"), CHAT),
    "keys": (request("GET /api/keys", NON_ASCII_BEARER), b""),
    "create-key": (request("POST /api/keys", NON_ASCII_BEARER), b'{"name":"k"}'),
    "revoke-key": (request("DELETE /api/keys/k1", NON_ASCII_BEARER), b""),
    "account": (request("GET /api/auth/me", NON_ASCII_BEARER), b""),
    "password": (
        request("POST /api/auth/password", NON_ASCII_BEARER),
        b'{"currentPassword":"admin123","newPassword":"a-new-password"}',
    ),
    "workers": (request("GET /api/monitoring/workers", NON_ASCII_BEARER), b""),
    "queue": (request("GET /api/monitoring/queue", NON_ASCII_BEARER), b""),
    "metrics": (request("GET /api/monitoring/metrics", NON_ASCII_BEARER), b""),
    "event-feed-query-token": (request("GET /api/monitoring/events?token=%FF"), b""),
    "event-feed-header": (request("GET /api/monitoring/events", NON_ASCII_BEARER), b""),
    "prometheus-scrape": (request("GET /metrics", NON_ASCII_BEARER), b""),
    # uvicorn takes the client address from X-Forwarded-For on loopback (a trusted proxy).
    "login-forwarded-for": (request("POST /api/auth/login", b"X-Forwarded-For: \xe9"), LOGIN),
}


@pytest.mark.parametrize(("head", "body"), CASES.values(), ids=CASES.keys())
async def test_values_that_cannot_travel_as_grpc_metadata_are_a_400(
    live_url: str, caplog: pytest.LogCaptureFixture, head: bytes, body: bytes
) -> None:
    caplog.set_level(logging.INFO)
    status, headers, content = await raw_exchange(live_url, head, body)
    assert status == 400, content
    error = orjson.loads(content)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "invalid_header_value"
    assert error["param"] in {"authorization", "token", "x-forwarded-for"}
    assert b"x-should-retry: false" in headers.lower()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_printable_credentials_still_reach_the_core(live_url: str) -> None:
    chat = request("POST /v1/chat/completions", f"Authorization: Bearer {GOOD_KEY}".encode())
    status, _, content = await raw_exchange(live_url, chat, CHAT)
    assert status == 200, content
    feed = f"GET /api/monitoring/workers?token={ADMIN_JWT}"
    status, _, content = await raw_exchange(
        live_url, request(feed, f"Authorization: Bearer {ADMIN_JWT}".encode())
    )
    assert status == 200, content


@pytest.mark.parametrize(
    "body",
    [b'{"model": "\xff"}', b'{"model": "\\ud800", "messages": []}', b"\xef\xbb\xbf{}"],
    ids=["invalid-utf8", "lone-surrogate", "bom"],
)
async def test_bodies_that_cannot_be_decoded_are_a_400(live_url: str, body: bytes) -> None:
    head = request("POST /v1/chat/completions", f"Authorization: Bearer {GOOD_KEY}".encode())
    status, _, content = await raw_exchange(live_url, head, body)
    assert status == 400, content
    assert orjson.loads(content)["error"]["code"] == "invalid_json"


async def test_undecodable_path_and_query_values_are_not_a_500(live_url: str) -> None:
    jwt = f"Authorization: Bearer {ADMIN_JWT}".encode()
    revoke = await raw_exchange(live_url, request("DELETE /api/keys/%FF%FE", jwt))
    assert revoke[0] == 404, revoke[2]
    metrics = await raw_exchange(
        live_url, request("GET /api/monitoring/metrics?windowMinutes=%FF", jwt)
    )
    assert metrics[0] == 400, metrics[2]
    model = await raw_exchange(
        live_url, request("GET /v1/models/%C3%28", f"Authorization: Bearer {GOOD_KEY}".encode())
    )
    assert model[0] == 404, model[2]
