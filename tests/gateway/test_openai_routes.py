"""The OpenAI routes against a fake core: shapes, headers, SSE, errors and metadata."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest
from gateway_fakes import ADMIN_JWT, GOOD_KEY, LIMITED_KEY, MODEL, FakeCore

from gpucloud_server.servicers.validation import ROLES

AUTH = {"authorization": f"Bearer {GOOD_KEY}"}
HELLO = [{"role": "user", "content": "Hi"}]


def chat(model: str = MODEL, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": HELLO, **extra}


def sse_events(body: str) -> list[str]:
    return [line for line in body.split("\n\n") if line]


def data_events(body: str) -> list[Any]:
    out: list[Any] = []
    for event in sse_events(body):
        if event.startswith("data: "):
            payload = event.removeprefix("data: ")
            out.append(payload if payload == "[DONE]" else orjson.loads(payload))
    return out


async def test_models_lists_the_core_models_in_openai_shape(client: httpx.AsyncClient) -> None:
    for prefix in ("/v1", "/api/v1"):
        response = await client.get(f"{prefix}/models", headers=AUTH)
        assert response.status_code == 200
        assert response.json() == {
            "object": "list",
            "data": [
                {
                    "id": MODEL,
                    "object": "model",
                    "created": 1,
                    "owned_by": "gpucloud",
                    "capabilities": {
                        "kind": "chat",
                        "tools": True,
                        "json_schema": False,
                        "logprobs": False,
                        "completions": False,
                        "max_context_tokens": 4096,
                        "embedding_dimensions": None,
                    },
                }
            ],
        }


async def test_retrieving_an_unknown_model_is_404(client: httpx.AsyncClient) -> None:
    assert (await client.get(f"/v1/models/{MODEL}", headers=AUTH)).json()["id"] == MODEL
    response = await client.get("/v1/models/nope", headers=AUTH)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"


async def test_non_streaming_completion_has_openai_shape_and_headers(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/v1/chat/completions", headers=AUTH, json=chat())
    assert response.status_code == 200
    body = response.json()
    assert list(body) == [
        "id", "object", "created", "model", "choices", "usage", "system_fingerprint"
    ]  # fmt: skip
    assert body["id"] == "chatcmpl-task123"
    assert body["object"] == "chat.completion"
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello world", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    assert body["usage"] == {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
    assert response.headers["x-queue-wait-ms"] == "7"
    assert len(response.headers["x-request-id"]) == 32


async def test_n_choices_are_assembled_per_index(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/chat/completions", headers=AUTH, json=chat(n=2))
    choices = response.json()["choices"]
    assert [c["message"]["content"] for c in choices] == ["Hello world", "Hello world"]


async def test_only_a_non_streaming_request_asks_the_core_for_the_whole_answer(
    client: httpx.AsyncClient, fake_core: FakeCore
) -> None:
    await client.post("/v1/chat/completions", headers=AUTH, json=chat())
    await client.post("/v1/chat/completions", headers=AUTH, json=chat(stream=True))
    assert [r.collect for r in fake_core.seen.requests] == [True, False]


async def test_a_core_that_streams_events_to_a_non_streaming_request_is_understood(
    client: httpx.AsyncClient, fake_core: FakeCore
) -> None:
    fake_core.scheduler.ignores_collect = True  # a core from before `collect`, mid-upgrade
    response = await client.post("/v1/chat/completions", headers=AUTH, json=chat(n=2))
    assert response.status_code == 200
    body = response.json()
    assert [c["message"]["content"] for c in body["choices"]] == ["Hello world", "Hello world"]
    assert body["usage"]["total_tokens"] == 11
    assert response.headers["x-queue-wait-ms"] == "7"


async def test_credentials_request_id_and_client_ip_travel_as_metadata(
    client: httpx.AsyncClient, fake_core: FakeCore
) -> None:
    headers = {**AUTH, "x-request-id": "req-abc"}
    response = await client.post("/v1/chat/completions", headers=headers, json=chat())
    assert response.headers["x-request-id"] == "req-abc"
    sent = fake_core.seen.metadata[-1]
    assert sent["authorization"] == f"Bearer {GOOD_KEY}"
    assert sent["x-request-id"] == "req-abc"
    assert sent["x-forwarded-for"] == "10.1.2.3"


@pytest.mark.parametrize(
    "request_id",
    ["r\u00e9q-1".encode(), b"has space", b"semi;colon", b"x" * 129, b""],
    ids=["non-ascii", "space", "semicolon", "too-long", "empty"],
)
async def test_unsafe_request_ids_are_replaced_before_reaching_grpc_metadata(
    client: httpx.AsyncClient, fake_core: FakeCore, request_id: bytes
) -> None:
    headers = {b"authorization": f"Bearer {GOOD_KEY}".encode(), b"x-request-id": request_id}
    response = await client.post("/v1/chat/completions", headers=headers, json=chat())
    assert response.status_code == 200, response.text
    fresh = response.headers["x-request-id"]
    assert len(fresh) == 32
    assert fake_core.seen.metadata[-1]["x-request-id"] == fresh
    headers[b"authorization"] = f"Bearer {ADMIN_JWT}".encode()
    workers = await client.get("/api/monitoring/workers", headers=headers)
    assert workers.status_code == 200, workers.text


async def test_request_ids_of_safe_characters_up_to_128_are_kept(
    client: httpx.AsyncClient, fake_core: FakeCore
) -> None:
    request_id = "Ab9._:-" + "z" * 121
    headers = {**AUTH, "x-request-id": request_id}
    response = await client.post("/v1/chat/completions", headers=headers, json=chat())
    assert response.headers["x-request-id"] == request_id
    assert fake_core.seen.metadata[-1]["x-request-id"] == request_id


async def test_every_role_the_core_accepts_passes_the_gateway(
    client: httpx.AsyncClient, fake_core: FakeCore
) -> None:
    roles = sorted(ROLES)
    messages = [{"role": role, "content": "x"} for role in roles]
    for message in messages:
        if message["role"] == "tool":
            message["tool_call_id"] = "call_1"
    response = await client.post("/v1/chat/completions", headers=AUTH, json=chat(messages=messages))
    assert response.status_code == 200, response.text
    assert [m.role for m in fake_core.seen.requests[-1].messages] == roles


@pytest.mark.parametrize("role", ["robot", "Function", "USER", ""])
async def test_a_role_the_core_refuses_is_400_naming_the_message(
    client: httpx.AsyncClient, fake_core: FakeCore, role: str
) -> None:
    messages = [*HELLO, {"role": role, "content": "x"}]
    response = await client.post("/v1/chat/completions", headers=AUTH, json=chat(messages=messages))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", "messages[1].role")
    # The gateway passed the role on: the refusal is the core's rule, not a copy of it.
    assert [m.role for m in fake_core.seen.requests[-1].messages] == ["user", role]


async def test_request_fields_reach_the_core(
    client: httpx.AsyncClient, fake_core: FakeCore
) -> None:
    parts = [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    body = chat(
        temperature=0.5, top_p=0.9, max_completion_tokens=20, stop="END", seed=7, n=1,
        user="u-1", priority=3, messages=[{"role": "user", "content": parts}],
    )  # fmt: skip
    await client.post("/v1/chat/completions", headers=AUTH, json=body)
    sent = fake_core.seen.requests[-1]
    assert sent.messages[0].content == "ab"
    assert sent.sampling.temperature == 0.5
    assert sent.sampling.top_p == pytest.approx(0.9)
    assert sent.sampling.max_tokens == 20
    assert list(sent.sampling.stop) == ["END"]
    assert sent.sampling.seed == 7
    assert sent.user == "u-1"
    assert sent.priority == 3


async def test_rate_limit_headers_are_forwarded_on_success(client: httpx.AsyncClient) -> None:
    headers = {"authorization": f"Bearer {LIMITED_KEY}"}
    response = await client.post("/v1/chat/completions", headers=headers, json=chat())
    assert response.headers["x-ratelimit-limit-requests"] == "60"
    assert response.headers["x-ratelimit-remaining-requests"] == "59"


async def test_stream_sends_role_deltas_finish_usage_and_done(client: httpx.AsyncClient) -> None:
    body = chat(stream=True, stream_options={"include_usage": True})
    response = await client.post("/v1/chat/completions", headers=AUTH, json=body)
    assert response.headers["content-type"].startswith("text/event-stream")
    events = data_events(response.text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["id"] == "chatcmpl-task123" for c in chunks)
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant"}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "Hello world"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
    assert all(c["usage"] is None for c in chunks[:-1])


async def test_stream_without_include_usage_has_no_usage_field(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/chat/completions", headers=AUTH, json=chat(stream=True))
    chunks = data_events(response.text)[:-1]
    assert all("usage" not in c for c in chunks)
    assert all(c["choices"] for c in chunks)


async def test_stream_reports_queue_positions_as_comments(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/chat/completions", headers=AUTH, json=chat("queued", stream=True)
    )
    comments = [e for e in sse_events(response.text) if e.startswith(":")]
    assert comments[:3] == [": queue position 2", ": queue position 1", ": queue position 0"]


async def test_failure_mid_stream_ends_with_an_error_event(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/chat/completions", headers=AUTH, json=chat("fail-mid", stream=True)
    )
    assert response.status_code == 200
    events = data_events(response.text)
    assert "[DONE]" not in events
    assert events[-1]["error"]["message"] == "worker w-1 went away mid-stream"
    assert events[-1]["error"]["type"] == "service_unavailable_error"


async def test_silent_stream_sends_keepalive_comments(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/chat/completions", headers=AUTH, json=chat("pause", stream=True)
    )
    assert ": keep-alive" in sse_events(response.text)
    assert response.text.endswith("data: [DONE]\n\n")
