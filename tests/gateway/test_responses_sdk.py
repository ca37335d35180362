"""The official openai SDK's Responses client against the gateway (in process) and a fake core."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest
from gateway_fakes import GOOD_KEY, MODEL, FakeCore
from openai.types.responses import ResponseFunctionToolCall
from responses_fakes import ANSWER, TOOLS_MODEL, WEATHER_ARGS, start_responses_core
from starlette.applications import Starlette

WEATHER: Any = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}
TIME: Any = {"type": "function", "name": "get_time", "parameters": {"type": "object"}}


@pytest.fixture
async def fake_core() -> AsyncIterator[FakeCore]:
    core = await start_responses_core()
    yield core
    await core.server.stop(None)


@pytest.fixture
async def sdk(app: Starlette) -> AsyncIterator[openai.AsyncOpenAI]:
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app))
    async with openai.AsyncOpenAI(
        base_url="http://test/v1", api_key=GOOD_KEY, http_client=http, max_retries=0
    ) as client:
        yield client


async def test_create_returns_the_text_and_usage(sdk: openai.AsyncOpenAI) -> None:
    response = await sdk.responses.create(model=MODEL, input="Hi", instructions="Be brief.")
    assert response.output_text == "Hello world"
    assert response.status == "completed"
    assert response.instructions == "Be brief."
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (5, 3)


async def test_a_function_tool_round_trip_feeds_the_calls_and_outputs_back(
    sdk: openai.AsyncOpenAI, fake_core: FakeCore
) -> None:
    first = await sdk.responses.create(model=TOOLS_MODEL, input="Weather?", tools=[WEATHER, TIME])
    calls = [item for item in first.output if isinstance(item, ResponseFunctionToolCall)]
    assert [(c.name, c.call_id) for c in calls] == [
        ("get_weather", "call_w"),
        ("get_time", "call_t"),
    ]
    assert json.loads(calls[0].arguments) == {"city": "Paris"}
    outputs: list[Any] = [
        {"type": "function_call_output", "call_id": c.call_id, "output": "21 °C"} for c in calls
    ]
    turn: list[Any] = [{"role": "user", "content": "Weather?"}, *first.output, *outputs]
    second = await sdk.responses.create(model=TOOLS_MODEL, input=turn, tools=[WEATHER, TIME])
    assert second.output_text == ANSWER
    messages = fake_core.seen.requests[-1].messages
    assert [m.role for m in messages] == ["user", "assistant", "tool", "tool"]
    assert messages[1].content == "Let me check."
    assert [c.id for c in messages[1].tool_calls] == ["call_w", "call_t"]
    assert [m.tool_call_id for m in messages[2:]] == ["call_w", "call_t"]


async def test_create_with_stream_yields_typed_events(sdk: openai.AsyncOpenAI) -> None:
    stream = await sdk.responses.create(model=MODEL, input="Hi", stream=True)
    kinds, text, final = [], "", None
    async for event in stream:
        kinds.append(event.type)
        if event.type == "response.output_text.delta":
            text += event.delta
        elif event.type == "response.completed":
            final = event.response
    assert kinds[0] == "response.created"
    assert text == "Hello world"
    assert final is not None
    assert final.output_text == "Hello world"


async def test_the_stream_helper_assembles_the_final_response_with_tool_calls(
    sdk: openai.AsyncOpenAI,
) -> None:
    async with sdk.responses.stream(
        model=TOOLS_MODEL, input="Weather?", tools=[WEATHER, TIME]
    ) as stream:
        arguments = [
            event.delta
            async for event in stream
            if event.type == "response.function_call_arguments.delta"
        ]
        final = await stream.get_final_response()
    assert arguments == [*WEATHER_ARGS, "{}"]
    assert final.output_text == "Let me check."
    weather = final.output[1]
    assert weather.type == "function_call"
    assert weather.parsed_arguments == {"city": "Paris"}  # a strict tool's arguments, parsed


async def test_the_stream_helper_assembles_a_text_answer(sdk: openai.AsyncOpenAI) -> None:
    async with sdk.responses.stream(model=MODEL, input="Hi") as stream:
        final = await stream.get_final_response()
    assert final.output_text == "Hello world"


async def test_refusals_raise_the_matching_sdk_errors(sdk: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.responses.create(model=MODEL, input="Hi", previous_response_id="resp_1")
    assert caught.value.param == "previous_response_id"  # type: ignore[attr-defined]
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.responses.create(model=MODEL, input="Hi", tools=[{"type": "web_search"}])
    assert caught.value.param == "tools[0].type"  # type: ignore[attr-defined]
    with pytest.raises(openai.RateLimitError):
        await sdk.responses.create(model="rate-limited", input="Hi", stream=True)


async def test_a_failure_mid_stream_reaches_the_sdk_as_response_failed(
    sdk: openai.AsyncOpenAI,
) -> None:
    stream = await sdk.responses.create(model="fail-mid", input="Hi", stream=True)
    events = [event async for event in stream]
    assert events[-1].type == "response.failed"
    assert events[-1].response.error is not None
    assert "went away mid-stream" in events[-1].response.error.message
