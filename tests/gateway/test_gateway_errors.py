"""Every failure answers with the OpenAI envelope and the status codes the SDKs map."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from gateway_fakes import GOOD_KEY, LIMITED_KEY, MODEL, RATE_HEADERS
from starlette.applications import Starlette

from gpucloud_gateway.app import create_app
from gpucloud_gateway.config import GatewaySettings
from gpucloud_gateway.main import core_channel

AUTH = {"authorization": f"Bearer {GOOD_KEY}"}
HELLO = [{"role": "user", "content": "Hi"}]


def assert_envelope(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    assert response.headers["x-request-id"]
    return dict(body["error"])


async def post(
    client: httpx.AsyncClient, body: Any, headers: dict[str, str] = AUTH
) -> httpx.Response:
    return await client.post("/v1/chat/completions", headers=headers, json=body)


async def test_missing_key_is_401_without_calling_the_core(client: httpx.AsyncClient) -> None:
    response = await post(client, {"model": MODEL, "messages": HELLO}, headers={})
    error = assert_envelope(response, 401)
    assert error["code"] == "missing_api_key"
    assert response.headers["x-should-retry"] == "false"


async def test_bad_key_is_401(client: httpx.AsyncClient) -> None:
    response = await post(
        client, {"model": MODEL, "messages": HELLO}, {"authorization": "Bearer x"}
    )
    assert assert_envelope(response, 401)["type"] == "authentication_error"


@pytest.mark.parametrize(
    ("model", "status", "code"),
    [
        ("forbidden", 403, "permission_denied"),
        ("unknown-model", 404, "model_not_found"),
        ("bad-sampling", 400, "invalid_argument"),
    ],
)
async def test_core_refusals_map_to_permanent_http_errors(
    client: httpx.AsyncClient, model: str, status: int, code: str
) -> None:
    for stream in (False, True):
        response = await post(client, {"model": model, "messages": HELLO, "stream": stream})
        assert assert_envelope(response, status)["code"] == code
        assert response.headers["x-should-retry"] == "false"


async def test_rate_limit_is_429_with_retry_after_and_limits(client: httpx.AsyncClient) -> None:
    response = await post(client, {"model": "rate-limited", "messages": HELLO})
    error = assert_envelope(response, 429)
    assert error["type"] == "rate_limit_error"
    assert error["code"] == "rate_limit_exceeded"
    assert response.headers["retry-after-ms"] == "1500"
    assert response.headers["retry-after"] == "2"
    assert response.headers["x-ratelimit-remaining-requests"] == "59"
    assert "x-should-retry" not in response.headers


@pytest.mark.parametrize(
    ("model", "stream", "status"),
    [
        ("unknown-model", False, 404),
        ("unknown-model", True, 404),
        ("bad-sampling", True, 400),
        ("fail-mid", False, 503),
        ("unfinished", False, 502),
    ],
)
async def test_errors_after_admission_carry_the_rate_limit_headers(
    client: httpx.AsyncClient, model: str, stream: bool, status: int
) -> None:
    body = {"model": model, "messages": HELLO, "stream": stream}
    response = await post(client, body, {"authorization": f"Bearer {LIMITED_KEY}"})
    assert_envelope(response, status)
    for name, value in RATE_HEADERS:
        assert response.headers[name] == value


async def test_worker_refusals_carry_the_core_error_code_and_param(
    client: httpx.AsyncClient,
) -> None:
    body = {"model": "too-long", "messages": HELLO}
    error = assert_envelope(await post(client, body), 400)
    assert (error["code"], error["param"]) == ("context_length_exceeded", "messages")
    assert error["type"] == "invalid_request_error"
    assert error["message"] == "This model's maximum context length is 8192 tokens."
    streamed = await post(client, {**body, "stream": True})
    assert streamed.status_code == 200  # the task had started: the error ends the stream
    last = orjson.loads(streamed.text.strip().split("\n\n")[-1].removeprefix("data: "))["error"]
    assert (last["code"], last["param"]) == ("context_length_exceeded", "messages")


async def test_no_capacity_is_503_with_retry_after(client: httpx.AsyncClient) -> None:
    response = await post(client, {"model": "no-capacity", "messages": HELLO})
    assert_envelope(response, 503)
    assert response.headers["retry-after-ms"] == "250"
    assert response.headers["retry-after"] == "1"


async def test_unexpected_core_failure_does_not_leak_details(client: httpx.AsyncClient) -> None:
    response = await post(client, {"model": "internal", "messages": HELLO})
    error = assert_envelope(response, 500)
    assert "hunter2" not in response.text
    assert response.headers["x-request-id"] in error["message"]


async def test_unreachable_core_is_503_with_a_generic_message(settings: GatewaySettings) -> None:
    dead = GatewaySettings(core_address="127.0.0.1:1")
    channel = core_channel(dead.core_address)
    app: Starlette = create_app(dead, channel)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        response = await post(client, {"model": MODEL, "messages": HELLO})
    await channel.close()
    error = assert_envelope(response, 503)
    assert error["message"] == "The inference service is temporarily unavailable; please retry."


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": HELLO}, "model"),
        ({"model": MODEL}, "messages"),
        ({"model": MODEL, "messages": []}, "messages"),
        ({"model": MODEL, "messages": "hi"}, "messages"),
        ({"model": MODEL, "messages": [{"content": "x"}]}, "messages[0].role"),
        ({"model": MODEL, "messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        (
            {"model": MODEL, "messages": [*HELLO, {"role": "Function", "content": "x"}]},
            "messages[1].role",
        ),
        ({"model": MODEL, "messages": [*HELLO, {"role": 7, "content": "x"}]}, "messages[1].role"),
        ({"model": MODEL, "messages": [{"role": "user"}]}, "messages[0].content"),
        (
            {"model": MODEL, "messages": [{"role": "user", "content": [{"type": "video"}]}]},
            "messages[0].content[0].type",
        ),
        ({"model": MODEL, "messages": HELLO, "temperature": "hot"}, "temperature"),
        ({"model": MODEL, "messages": HELLO, "temperature": 3}, "temperature"),
        ({"model": MODEL, "messages": HELLO, "top_p": -1}, "top_p"),
        ({"model": MODEL, "messages": HELLO, "max_tokens": 0}, "max_tokens"),
        (
            {"model": MODEL, "messages": HELLO, "max_completion_tokens": 1.5},
            "max_completion_tokens",
        ),
        ({"model": MODEL, "messages": HELLO, "n": 100}, "n"),
        ({"model": MODEL, "messages": HELLO, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"model": MODEL, "messages": HELLO, "stream": "yes"}, "stream"),
        (
            {"model": MODEL, "messages": HELLO, "stream_options": {"include_usage": True}},
            "stream_options",
        ),
        ({"model": MODEL, "messages": HELLO, "priority": 11}, "priority"),
        ({"model": MODEL, "messages": HELLO, "seed": True}, "seed"),
    ],
)
async def test_schema_errors_are_400_naming_the_param(
    client: httpx.AsyncClient, body: dict[str, Any], param: str
) -> None:
    error = assert_envelope(await post(client, body), 400)
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"


async def test_malformed_json_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/chat/completions", headers=AUTH, content=b"{nope")
    assert assert_envelope(response, 400)["code"] == "invalid_json"
    response = await client.post("/v1/chat/completions", headers=AUTH, content=b"[1]")
    assert assert_envelope(response, 400)["code"] == "invalid_json"


async def test_declared_oversized_body_is_413_before_reading(client: httpx.AsyncClient) -> None:
    big = b'{"model": "' + b"x" * (1 << 20) + b'"}'
    response = await client.post("/v1/chat/completions", headers=AUTH, content=big)
    assert assert_envelope(response, 413)["code"] == "request_too_large"
    assert response.headers["x-should-retry"] == "false"


async def test_undeclared_oversized_body_is_cut_off_while_streaming(
    client: httpx.AsyncClient,
) -> None:
    pulled = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal pulled
        for _ in range(64):
            pulled += 1
            yield b"x" * 65536

    response = await client.post("/v1/chat/completions", headers=AUTH, content=body())
    assert_envelope(response, 413)
    assert pulled < 64


async def test_unknown_api_path_is_404_and_wrong_method_is_405(client: httpx.AsyncClient) -> None:
    assert assert_envelope(await client.get("/v1/nothing-here"), 404)["code"] == "unknown_url"
    assert_envelope(await client.get("/api/nothing"), 404)
    assert_envelope(await client.get("/v1/chat/completions"), 405)
    assert_envelope(await client.delete("/api/keys"), 405)
