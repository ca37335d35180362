"""Chat answers in OpenAI's shapes, checked against openai-python's models: tool calls,
logprobs, system_fingerprint, obfuscation; and refusals before the first token as HTTP
errors even for streaming requests."""

from __future__ import annotations

from typing import Any

import conformance
import httpx
import orjson
import pytest
from gateway_fakes import ARGUMENTS, GOOD_KEY, MODEL, REPLY, FakeCore

AUTH = {"authorization": f"Bearer {GOOD_KEY}"}
HELLO = [{"role": "user", "content": "Hi"}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
TIME = {"type": "function", "function": {"name": "get_time"}}


def chat(model: str = MODEL, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": HELLO, **extra}


async def post(
    client: httpx.AsyncClient, body: dict[str, Any], path: str = "/v1/chat/completions"
) -> httpx.Response:
    return await client.post(path, headers=AUTH, json=body)


async def whole(client: httpx.AsyncClient, **extra: Any) -> dict[str, Any]:
    response = await post(client, chat(**extra))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    conformance.chat_completion(body)
    return body


async def chunks(client: httpx.AsyncClient, **extra: Any) -> list[dict[str, Any]]:
    response = await post(client, chat(stream=True, **extra))
    assert response.status_code == 200, response.text
    conformance.chat_stream(response.text)
    return conformance.sse_data(response.text)


async def test_a_text_answer_has_every_member_the_sdk_reads(client: httpx.AsyncClient) -> None:
    body = await whole(client)
    assert body["choices"][0]["message"] == {
        "role": "assistant",
        "content": "Hello world",
        "refusal": None,
    }
    assert body["choices"][0]["logprobs"] is None
    assert body["system_fingerprint"].startswith("gpucloud-")


async def test_a_tool_call_answer_has_null_content_and_whole_calls(
    client: httpx.AsyncClient,
) -> None:
    body = await whole(client, tools=[WEATHER])
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"] == {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": "".join(ARGUMENTS)},
            }
        ],
    }


async def test_parallel_tool_calls_come_in_index_order_per_choice(
    client: httpx.AsyncClient,
) -> None:
    body = await whole(client, tools=[WEATHER, TIME], n=2)
    for choice in body["choices"]:
        calls = choice["message"]["tool_calls"]
        assert [(c["id"], c["function"]["name"]) for c in calls] == [
            ("call_1", "get_weather"),
            ("call_2", "get_time"),
        ]
    serial = await whole(client, tools=[WEATHER, TIME], parallel_tool_calls=False)
    assert len(serial["choices"][0]["message"]["tool_calls"]) == 1


async def test_streamed_tool_calls_open_with_id_and_name_then_send_argument_fragments(
    client: httpx.AsyncClient,
) -> None:
    events = await chunks(client, tools=[WEATHER])
    deltas = [c["choices"][0]["delta"] for c in events if c["choices"]]
    pieces = [d["tool_calls"] for d in deltas if "tool_calls" in d]
    opening = {"name": "get_weather", "arguments": ""}
    assert pieces == [
        [{"index": 0, "id": "call_1", "type": "function", "function": opening}],
        *([{"index": 0, "function": {"arguments": fragment}}] for fragment in ARGUMENTS),
    ]
    assert all("content" not in c["choices"][0]["delta"] for c in events[1:] if c["choices"])
    assert events[-1]["choices"][0]["finish_reason"] == "tool_calls"


async def test_logprobs_are_per_token_with_bytes_and_alternatives(
    client: httpx.AsyncClient,
) -> None:
    body = await whole(client, logprobs=True, top_logprobs=1)
    content = body["choices"][0]["logprobs"]["content"]
    assert [e["token"] for e in content] == list(REPLY)
    assert content[0] == {
        "token": "Hel",
        "logprob": -0.25,
        "bytes": list(b"Hel"),
        "top_logprobs": [{"token": "Hel", "logprob": -0.25, "bytes": list(b"Hel")}],
    }
    assert body["choices"][0]["logprobs"]["refusal"] is None
    without = await whole(client, logprobs=True)
    assert without["choices"][0]["logprobs"]["content"][0]["top_logprobs"] == []


async def test_streamed_logprobs_ride_on_the_chunk_of_their_tokens(
    client: httpx.AsyncClient,
) -> None:
    events = await chunks(client, logprobs=True, top_logprobs=2)
    texts = [c for c in events if c["choices"] and c["choices"][0]["delta"].get("content")]
    assert [c["choices"][0]["logprobs"]["content"][0]["token"] for c in texts] == list(REPLY)
    assert all(len(c["choices"][0]["logprobs"]["content"][0]["top_logprobs"]) == 2 for c in texts)
    assert events[0]["choices"][0]["logprobs"] is None  # the role chunk


async def test_every_chunk_carries_the_same_system_fingerprint(client: httpx.AsyncClient) -> None:
    events = await chunks(client, stream_options={"include_usage": True})
    fingerprints = {c["system_fingerprint"] for c in events}
    assert fingerprints == {(await whole(client))["system_fingerprint"]}


async def test_obfuscation_pads_content_chunks_only_when_asked(client: httpx.AsyncClient) -> None:
    assert all("obfuscation" not in c for c in await chunks(client))
    events = await chunks(client, stream_options={"include_obfuscation": True})
    padded = [c for c in events if "obfuscation" in c]
    assert len(padded) == len(REPLY)
    for chunk in padded:
        length = len(chunk["choices"][0]["delta"]["content"]) + len(chunk["obfuscation"])
        assert length % 32 == 0


async def test_structured_output_answers_json(client: httpx.AsyncClient) -> None:
    body = await whole(client, response_format={"type": "json_object"})
    assert orjson.loads(body["choices"][0]["message"]["content"]) == {"name": "Ada", "age": 36}


# (model, extra body) -> (status, code, param) of the core's refusal before the first token.
ADMISSION = [
    pytest.param("forbidden", {}, 403, "permission_denied", None, id="model-not-allowed"),
    pytest.param("unknown-model", {}, 404, "model_not_found", "model", id="unknown-model"),
    pytest.param("no-capacity", {}, 503, "unavailable", None, id="no-capacity"),
    pytest.param("rate-limited", {}, 429, "rate_limit_exceeded", None, id="rate-limited"),
    pytest.param(MODEL, {"temperature": 5}, 400, "invalid_argument", "temperature", id="values"),
    pytest.param(
        "small-context", {"max_tokens": 64}, 400, "context_length_exceeded", None, id="context"
    ),
    pytest.param(
        "small-context", {"logprobs": True}, 400, "unsupported_parameter", "logprobs", id="feature"
    ),
]


@pytest.mark.parametrize(("model", "extra", "status", "code", "param"), ADMISSION)
@pytest.mark.parametrize("route", ["chat", "completions"])
async def test_refusals_before_the_first_token_are_http_errors_when_streaming(
    client: httpx.AsyncClient,
    route: str,
    model: str,
    extra: dict[str, Any],
    status: int,
    code: str,
    param: str | None,
) -> None:
    if route == "chat":
        path, body = "/v1/chat/completions", chat(model, stream=True, **extra)
    else:  # the integer `logprobs` of text completions
        path = "/v1/completions"
        extra = {k: 2 if v is True else v for k, v in extra.items()}
        body = {"model": model, "prompt": "Hi", "stream": True, **extra}
    response = await post(client, body, path)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = conformance.error(response.json())
    assert error["code"] == code
    if code == "context_length_exceeded":
        param = "messages" if route == "chat" else "prompt"
    assert error["param"] == param
    if status in (429, 503):
        assert int(response.headers["retry-after-ms"]) > 0
    else:
        assert response.headers["x-should-retry"] == "false"


async def test_queue_positions_follow_admission_on_both_routes(client: httpx.AsyncClient) -> None:
    for path, body in [
        ("/v1/chat/completions", chat("queued", stream=True)),
        ("/v1/completions", {"model": "queued", "prompt": "Hi", "stream": True}),
    ]:
        response = await post(client, body, path)
        assert response.status_code == 200
        lines = [e for e in response.text.split("\n\n") if e]
        assert lines[:3] == [": queue position 2", ": queue position 1", ": queue position 0"]
        assert lines[-1] == "data: [DONE]"


async def test_a_whole_answer_reports_its_queue_wait(
    client: httpx.AsyncClient, fake_core: FakeCore
) -> None:
    response = await post(client, chat(tools=[WEATHER]))
    assert response.headers["x-queue-wait-ms"] == "7"
    assert fake_core.seen.requests[-1].collect
