"""/v1/responses answers: the Response and its stream events, checked with the openai SDK's
own pydantic models (strict, no unknown fields), errors before and after the head, metrics
and cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from gateway_fakes import GOOD_KEY, LIMITED_KEY, MODEL, FakeCore
from openai.types.responses import Response
from responses_fakes import (
    ANSWER,
    CUT_MODEL,
    LOGPROBS_MODEL,
    RESPONSE,
    STREAM_EVENT,
    TOOLS_MODEL,
    WEATHER_ARGS,
    known,
    sse,
    start_responses_core,
)
from test_openapi import errors_of

AUTH = {"authorization": f"Bearer {GOOD_KEY}"}
TOOLS = [
    {"type": "function", "name": "get_weather", "parameters": {"type": "object"}},
    {"type": "function", "name": "get_time"},
]
TEXT_EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.delta",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


@pytest.fixture
async def fake_core() -> AsyncIterator[FakeCore]:
    core = await start_responses_core()
    yield core
    await core.server.stop(None)


async def create(client: httpx.AsyncClient, **body: Any) -> httpx.Response:
    return await client.post("/v1/responses", headers=AUTH, json={"model": MODEL, **body})


def checked(body: dict[str, Any]) -> Response:
    """`body` as openai-python's Response, validated strictly, with no field it does not know."""
    parsed: Response = known(RESPONSE, body, "response")
    return parsed


async def stream_events(
    client: httpx.AsyncClient, *, padded: bool = False, **body: Any
) -> list[dict[str, Any]]:
    """A streamed response's events, each checked by the SDK's model, numbered in order;
    `padded` lets `obfuscation` through, a field OpenAI sends that openai-python leaves out."""
    response = await create(client, stream=True, **body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [data for _, data in sse(response.text)]
    for event in events:
        known(STREAM_EVENT, _unpadded(event) if padded else event, event["type"])
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert len({e["response"]["id"] for e in events if "response" in e}) == 1
    return events


def _unpadded(event: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k != "obfuscation"}


async def test_a_text_answer_is_a_completed_response_with_one_message(
    client: httpx.AsyncClient,
) -> None:
    response = await create(client, input="Hi", instructions="Be brief.", temperature=0.5)
    assert response.status_code == 200
    assert response.headers["x-queue-wait-ms"] == "7"
    body = response.json()
    parsed = checked(body)
    assert parsed.id.startswith("resp_")
    assert (parsed.object, parsed.status, parsed.model) == ("response", "completed", MODEL)
    assert parsed.output_text == "Hello world"
    assert [item.type for item in parsed.output] == ["message"]
    assert body["output"][0]["id"].startswith("msg_")
    assert body["output"][0]["content"] == [
        {"type": "output_text", "text": "Hello world", "annotations": [], "logprobs": []}
    ]
    assert body["usage"] == {
        "input_tokens": 5,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": 3,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 8,
    }
    assert body["completed_at"] >= body["created_at"]
    assert (body["instructions"], body["temperature"], body["top_p"]) == ("Be brief.", 0.5, None)
    assert (body["background"], body["previous_response_id"]) == (False, None)
    assert "store" not in body  # not in openai-python's model; nothing is stored anyway
    assert (body["tool_choice"], body["tools"], body["parallel_tool_calls"]) == ("auto", [], True)
    assert body["text"] == {"format": {"type": "text"}}
    assert (body["error"], body["incomplete_details"], body["metadata"]) == (None, None, {})


async def test_the_request_settings_are_echoed(client: httpx.AsyncClient) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    text = {"format": {"type": "json_schema", "name": "out", "schema": schema, "strict": True}}
    body = {
        "input": "Hi",
        "tools": TOOLS,
        "tool_choice": {"type": "function", "name": "get_time"},
        "parallel_tool_calls": False,
        "text": text,
        "max_output_tokens": 40,
        "top_p": 0.5,
        "user": "u-1",
        "metadata": {"k": "v"},
        "top_logprobs": 3,
    }
    echoed = (await create(client, **body)).json()
    checked(echoed)
    for name, value in body.items():
        if name not in ("input", "tools"):
            assert echoed[name] == value, name
    assert echoed["tools"] == [
        {**tool, "description": None, "parameters": tool.get("parameters"), "strict": None}
        for tool in TOOLS
    ]


async def test_tool_calls_are_function_call_items_after_the_text(
    client: httpx.AsyncClient,
) -> None:
    body = (await create(client, model=TOOLS_MODEL, input="Weather?", tools=TOOLS)).json()
    parsed = checked(body)
    assert parsed.status == "completed"
    assert parsed.output_text == "Let me check."
    message, weather, time = body["output"]
    assert message["type"] == "message"
    assert {k: weather[k] for k in ("type", "status", "call_id", "name", "arguments")} == {
        "type": "function_call",
        "status": "completed",
        "call_id": "call_w",
        "name": "get_weather",
        "arguments": "".join(WEATHER_ARGS),
    }
    assert (time["call_id"], time["name"], time["arguments"]) == ("call_t", "get_time", "{}")
    assert weather["id"].startswith("fc_")
    assert weather["id"] != time["id"]


async def test_an_answer_cut_at_the_token_limit_is_incomplete(client: httpx.AsyncClient) -> None:
    body = (await create(client, model=CUT_MODEL, input="Story", max_output_tokens=4)).json()
    parsed = checked(body)
    assert parsed.status == "incomplete"
    assert body["incomplete_details"] == {"reason": "max_output_tokens"}
    assert body["output"][0]["status"] == "incomplete"
    assert body["completed_at"] is None
    assert parsed.output_text == "Once upon a time"


async def test_logprobs_come_with_their_bytes_when_included(client: httpx.AsyncClient) -> None:
    include = ["message.output_text.logprobs"]
    body = (await create(client, model=LOGPROBS_MODEL, input="Hi", include=include)).json()
    checked(body)
    assert body["output"][0]["content"][0]["logprobs"] == [
        {
            "token": "Hi",
            "bytes": [72, 105],
            "logprob": -0.25,
            "top_logprobs": [{"token": "Hey", "bytes": [72, 101, 121], "logprob": -1.5}],
        },
        {"token": "é", "bytes": [195, 169], "logprob": -0.5, "top_logprobs": []},
    ]
    events = await stream_events(client, model=LOGPROBS_MODEL, input="Hi", include=include)
    deltas = [e for e in events if e["type"] == "response.output_text.delta"]
    assert deltas[0]["logprobs"] == [
        {"token": "Hi", "logprob": -0.25, "top_logprobs": [{"token": "Hey", "logprob": -1.5}]}
    ]


async def test_stream_tells_a_text_answer_event_by_event(client: httpx.AsyncClient) -> None:
    events = await stream_events(client, input="Hi")
    assert [e["type"] for e in events] == TEXT_EVENTS
    created, completed = events[0]["response"], events[-1]["response"]
    assert (created["status"], created["output"], created["usage"]) == ("in_progress", [], None)
    assert "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta") == (
        "Hello world"
    )
    item_id = events[2]["item"]["id"]
    assert {e["item_id"] for e in events if "item_id" in e} == {item_id}
    assert events[7]["text"] == "Hello world"
    assert events[9]["item"]["status"] == "completed"
    assert checked(completed).output_text == "Hello world"
    assert completed["usage"]["total_tokens"] == 8
    assert completed["output"] == [events[9]["item"]]


async def test_stream_tells_tool_calls_as_function_call_items(client: httpx.AsyncClient) -> None:
    events = await stream_events(client, model=TOOLS_MODEL, input="Weather?", tools=TOOLS)
    added = [e["item"] for e in events if e["type"] == "response.output_item.added"]
    assert [(i["type"], i["status"]) for i in added] == [
        ("message", "in_progress"),
        ("function_call", "in_progress"),
        ("function_call", "in_progress"),
    ]
    assert [(i.get("name"), i.get("arguments")) for i in added[1:]] == [
        ("get_weather", ""),
        ("get_time", ""),
    ]
    arguments = [e for e in events if e["type"] == "response.function_call_arguments.delta"]
    assert [(e["output_index"], e["delta"]) for e in arguments] == [
        (1, WEATHER_ARGS[0]),
        (1, WEATHER_ARGS[1]),
        (2, "{}"),
    ]
    done = [e for e in events if e["type"] == "response.function_call_arguments.done"]
    assert [(e["output_index"], e["arguments"]) for e in done] == [
        (1, "".join(WEATHER_ARGS)),
        (2, "{}"),
    ]
    finished = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert [i["status"] for i in finished] == ["completed"] * 3
    assert events[-1]["type"] == "response.completed"
    assert events[-1]["response"]["output"] == finished


async def test_obfuscation_pads_delta_events_only_when_asked(client: httpx.AsyncClient) -> None:
    plain = await stream_events(client, model=TOOLS_MODEL, input="Hi", tools=TOOLS)
    assert not any("obfuscation" in e for e in plain)
    options = {"include_obfuscation": True}
    padded = await stream_events(
        client, padded=True, model=TOOLS_MODEL, input="Hi", tools=TOOLS, stream_options=options
    )
    deltas = [e for e in padded if e["type"].endswith(".delta")]
    assert deltas
    assert all(len(e["delta"] + e["obfuscation"]) % 32 == 0 for e in deltas)
    assert not any("obfuscation" in e for e in padded if not e["type"].endswith(".delta"))


async def test_stream_of_a_cut_answer_ends_with_response_incomplete(
    client: httpx.AsyncClient,
) -> None:
    events = await stream_events(client, model=CUT_MODEL, input="Story")
    last = events[-1]
    assert last["type"] == "response.incomplete"
    assert last["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert last["response"]["usage"]["output_tokens"] == 4


async def test_a_queued_stream_says_so_before_it_starts(client: httpx.AsyncClient) -> None:
    response = await create(client, model="queued", input="Hi", stream=True)
    assert ": queue position 2" in response.text
    events = [data for _, data in sse(response.text)]
    for event in events:
        known(STREAM_EVENT, event, event["type"])
    assert [e["type"] for e in events[:3]] == [
        "response.created",
        "response.queued",
        "response.in_progress",
    ]
    assert [e["response"]["status"] for e in events[:3]] == ["queued", "queued", "in_progress"]
    assert events[-1]["type"] == "response.completed"


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("model", "status", "code"),
    [
        ("rate-limited", 429, "rate_limit_exceeded"),
        ("no-capacity", 503, "unavailable"),
        ("unknown-model", 404, "model_not_found"),
        ("forbidden", 403, "permission_denied"),
    ],
)
async def test_a_refusal_before_the_first_token_keeps_its_http_status(
    client: httpx.AsyncClient, stream: bool, model: str, status: int, code: str
) -> None:
    response = await create(client, model=model, input="Hi", stream=stream)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["code"] == code


async def test_a_bad_key_is_401_and_a_missing_one_never_reaches_the_core(
    client: httpx.AsyncClient, fake_core: FakeCore
) -> None:
    headers = {"authorization": "Bearer sk-wrong"}
    body = {"model": MODEL, "input": "Hi"}
    assert (await client.post("/v1/responses", headers=headers, json=body)).status_code == 401
    assert (await client.post("/v1/responses", json=body)).status_code == 401
    assert len(fake_core.seen.requests) == 1


async def test_rate_limit_headers_are_forwarded(client: httpx.AsyncClient) -> None:
    headers = {"authorization": f"Bearer {LIMITED_KEY}"}
    body = {"model": MODEL, "input": "Hi"}
    for stream in (False, True):
        response = await client.post(
            "/api/v1/responses", headers=headers, json={**body, "stream": stream}
        )
        assert response.status_code == 200
        assert response.headers["x-ratelimit-remaining-requests"] == "59"


async def test_a_failure_mid_stream_ends_with_response_failed(client: httpx.AsyncClient) -> None:
    events = await stream_events(client, model="fail-mid", input="Hi")
    assert events[-1]["type"] == "response.failed"
    failed = events[-1]["response"]
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "server_error"
    assert "went away mid-stream" in failed["error"]["message"]
    assert failed["output"][0]["status"] == "incomplete"
    assert failed["output"][0]["content"][0]["text"] == "Hello world"


async def test_a_refusal_after_the_start_names_the_responses_field(
    client: httpx.AsyncClient,
) -> None:
    events = await stream_events(client, model="too-long", input="Hi")
    error = events[-1]["response"]["error"]
    assert (events[-1]["type"], error["code"], error["param"]) == (
        "response.failed",
        "invalid_prompt",
        "input",
    )


async def test_requests_count_in_the_chat_metrics(client: httpx.AsyncClient) -> None:
    await create(client, input="Hi")
    await create(client, input="Hi", stream=True)
    await create(client, model="fail-mid", input="Hi", stream=True)
    await create(client, input="Hi", background=True)
    text = (await client.get("/metrics")).text
    assert f'gpucloud_requests_total{{model="{MODEL}",status="200",stream="false"}} 1.0' in text
    assert f'gpucloud_requests_total{{model="{MODEL}",status="200",stream="true"}} 1.0' in text
    assert 'gpucloud_requests_total{model="fail-mid",status="503",stream="true"} 1.0' in text
    assert 'gpucloud_requests_total{model="",status="400",stream="false"} 1.0' in text
    assert f'gpucloud_tokens_total{{kind="completion",model="{MODEL}"}} 6.0' in text


async def test_a_client_that_leaves_a_stream_cancels_the_core_call(
    live_url: str, fake_core: FakeCore
) -> None:
    async with (
        httpx.AsyncClient(base_url=live_url) as http,
        http.stream(
            "POST",
            "/v1/responses",
            json={"model": "slow", "input": "Hi", "stream": True},
            headers=AUTH,
        ) as response,
    ):
        async for line in response.aiter_lines():
            if line.startswith("data: ") and '"delta":"."' in line:
                break
    await asyncio.wait_for(fake_core.seen.cancelled.wait(), 10.0)  # against hangs only


async def test_a_client_that_leaves_a_whole_answer_cancels_the_core_call(
    live_url: str, fake_core: FakeCore
) -> None:
    host, port = live_url.removeprefix("http://").split(":")
    body = orjson.dumps({"model": "slow", "input": "Hi"})
    request = (
        f"POST /v1/responses HTTP/1.1\r\nhost: {host}\r\n"
        f"authorization: Bearer {GOOD_KEY}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode() + body
    _, writer = await asyncio.open_connection(host, int(port))
    writer.write(request)
    await writer.drain()
    await asyncio.wait_for(fake_core.seen.slow_started.wait(), 10.0)  # against hangs only
    writer.transport.abort()  # RST, as a killed client would
    await asyncio.wait_for(fake_core.seen.cancelled.wait(), 10.0)


async def test_the_route_is_documented_and_its_answers_match(client: httpx.AsyncClient) -> None:
    doc = (await client.get("/openapi.json")).json()
    for path in ("/v1/responses", "/api/v1/responses"):
        operation = doc["paths"][path]["post"]
        assert operation["security"] == [{"apiKey": []}]
    content = doc["paths"]["/v1/responses"]["post"]["responses"]["200"]["content"]
    events = content["text/event-stream"]["x-events"]
    assert {"response.created", "response.output_text.delta", "response.completed"} <= set(events)
    answer = (await create(client, model=TOOLS_MODEL, input="Hi", tools=TOOLS)).json()
    assert errors_of(doc, content["application/json"]["schema"], answer) == []
    for event in await stream_events(client, model=TOOLS_MODEL, input="Hi", tools=TOOLS):
        assert errors_of(doc, events[event["type"]], event) == [], event["type"]


async def test_the_answer_to_a_follow_up_turn_uses_the_tool_output(
    client: httpx.AsyncClient,
) -> None:
    first = (await create(client, model=TOOLS_MODEL, input="Weather?", tools=TOOLS)).json()
    follow_up = [
        {"role": "user", "content": "Weather?"},
        *first["output"],
        {"type": "function_call_output", "call_id": "call_w", "output": "21"},
        {"type": "function_call_output", "call_id": "call_t", "output": "noon"},
    ]
    body = (await create(client, model=TOOLS_MODEL, input=follow_up, tools=TOOLS)).json()
    assert checked(body).output_text == ANSWER
