"""/v1/responses requests as the core receives them, and the requests refused on the way."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from gateway_fakes import GOOD_KEY, MODEL, FakeCore
from responses_fakes import start_responses_core

from gpucloud.v1 import chat_pb2, scheduler_pb2

AUTH = {"authorization": f"Bearer {GOOD_KEY}"}
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    "strict": True,
}


@pytest.fixture
async def fake_core() -> AsyncIterator[FakeCore]:
    core = await start_responses_core()
    yield core
    await core.server.stop(None)


async def sent(
    client: httpx.AsyncClient, fake_core: FakeCore, **body: Any
) -> scheduler_pb2.CreateChatCompletionRequest:
    """POSTs a Responses body; the chat request the core received."""
    response = await client.post("/v1/responses", headers=AUTH, json={"model": MODEL, **body})
    assert response.status_code == 200, response.text
    return fake_core.seen.requests[-1]


async def refusal(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await client.post("/v1/responses", headers=AUTH, json={"model": MODEL, **body})
    assert response.status_code == 400, response.text
    error: dict[str, Any] = response.json()["error"]
    return error


async def test_string_input_is_one_user_message_after_the_instructions(
    client: httpx.AsyncClient, fake_core: FakeCore
) -> None:
    request = await sent(client, fake_core, input="Hi", instructions="Be brief.")
    assert [(m.role, m.content) for m in request.messages] == [
        ("system", "Be brief."),
        ("user", "Hi"),
    ]
    assert request.collect
    assert not request.tools
    assert not request.HasField("tool_choice")
    assert not request.HasField("parallel_tool_calls")
    assert not request.HasField("response_format")


async def test_input_items_become_messages_tool_calls_and_tool_outputs(
    client: httpx.AsyncClient, fake_core: FakeCore
) -> None:
    items = [
        {"role": "developer", "content": "Use tools."},
        {
            "type": "message",
            "role": "user",
            "content": [
                {"type": "input_text", "text": "Weather "},
                {"type": "input_text", "text": "in Paris?"},
            ],
        },
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Checking.", "annotations": []}],
        },
        {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
        {"type": "function_call", "call_id": "c2", "name": "get_time", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "21 °C"},
        {
            "type": "function_call_output",
            "call_id": "c2",
            "output": [{"type": "input_text", "text": "noon"}],
        },
    ]
    request = await sent(client, fake_core, input=items)
    roles = [(m.role, m.content, m.tool_call_id) for m in request.messages]
    assert roles == [
        ("developer", "Use tools.", ""),
        ("user", "Weather in Paris?", ""),
        ("assistant", "Checking.", ""),
        ("tool", "21 °C", "c1"),
        ("tool", "noon", "c2"),
    ]
    assert list(request.messages[2].tool_calls) == [
        chat_pb2.ToolCall(id="c1", name="get_weather", arguments="{}"),
        chat_pb2.ToolCall(id="c2", name="get_time", arguments="{}"),
    ]
    assert not any(m.parts for m in request.messages)  # text only: no parts


async def test_a_function_call_first_in_the_input_opens_an_assistant_message(
    client: httpx.AsyncClient, fake_core: FakeCore
) -> None:
    items = [
        {"role": "user", "content": "Hi"},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "ok"},
    ]
    request = await sent(client, fake_core, input=items)
    assert [m.role for m in request.messages] == ["user", "assistant", "tool"]
    assert request.messages[1].content == ""
    assert [c.id for c in request.messages[1].tool_calls] == ["c1"]


async def test_image_and_file_parts_travel_in_order_beside_the_joined_text(
    client: httpx.AsyncClient, fake_core: FakeCore
) -> None:
    content = [
        {"type": "input_text", "text": "What is this?"},
        {"type": "input_image", "image_url": "data:image/png;base64,AAA", "detail": "low"},
        {"type": "input_file", "filename": "a.pdf", "file_data": "data:application/pdf;base64,B"},
    ]
    request = await sent(client, fake_core, input=[{"role": "user", "content": content}])
    message = request.messages[0]
    assert message.content == "What is this?"
    assert [p.WhichOneof("part") for p in message.parts] == ["text", "image_url", "file"]
    assert message.parts[1].image_url == chat_pb2.ImageUrl(
        url="data:image/png;base64,AAA", detail="low"
    )
    assert message.parts[2].file.filename == "a.pdf"


async def test_audio_parts_and_an_assistants_refusal_travel(
    client: httpx.AsyncClient, fake_core: FakeCore
) -> None:
    audio = {"type": "input_audio", "input_audio": {"data": "UklGR", "format": "wav"}}
    refusal = {"type": "refusal", "refusal": "I can't."}
    items = [
        {"role": "user", "content": [audio]},
        {"type": "message", "role": "assistant", "content": [refusal]},
    ]
    request = await sent(client, fake_core, input=items, text={"format": {"type": "text"}})
    heard, refused = request.messages
    assert heard.parts[0].input_audio == chat_pb2.InputAudio(data="UklGR", format="wav")
    assert (refused.content, refused.refusal, list(refused.parts)) == ("", "I can't.", [])
    assert request.response_format.type == chat_pb2.RESPONSE_FORMAT_TYPE_TEXT


async def test_tools_choice_parallel_calls_and_json_schema_reach_the_core(
    client: httpx.AsyncClient, fake_core: FakeCore
) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "number"}}}
    request = await sent(
        client,
        fake_core,
        input="Hi",
        tools=[WEATHER, {"type": "function", "name": "get_time"}],
        tool_choice={"type": "function", "name": "get_weather"},
        parallel_tool_calls=False,
        text={"format": {"type": "json_schema", "name": "out", "schema": schema, "strict": True}},
    )
    weather, time = request.tools
    assert (weather.name, weather.description, weather.strict) == (
        "get_weather",
        "The weather in a city.",
        True,
    )
    assert orjson.loads(weather.parameters_json) == WEATHER["parameters"]
    assert (time.name, time.parameters_json, time.HasField("strict")) == ("get_time", "", False)
    assert request.tool_choice == chat_pb2.ToolChoice(
        mode=chat_pb2.TOOL_CHOICE_MODE_FUNCTION, function="get_weather"
    )
    assert request.HasField("parallel_tool_calls")
    assert not request.parallel_tool_calls
    assert request.response_format.type == chat_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA
    assert (request.response_format.name, request.response_format.strict) == ("out", True)
    assert orjson.loads(request.response_format.schema_json) == schema


@pytest.mark.parametrize(
    ("choice", "mode"),
    [
        ("none", chat_pb2.TOOL_CHOICE_MODE_NONE),
        ("auto", chat_pb2.TOOL_CHOICE_MODE_AUTO),
        ("required", chat_pb2.TOOL_CHOICE_MODE_REQUIRED),
    ],
)
async def test_tool_choice_modes_map_to_the_contract(
    client: httpx.AsyncClient, fake_core: FakeCore, choice: str, mode: int
) -> None:
    request = await sent(client, fake_core, input="Hi", tools=[WEATHER], tool_choice=choice)
    assert request.tool_choice.mode == mode


async def test_json_object_format_and_sampling_fields_reach_the_core(
    client: httpx.AsyncClient, fake_core: FakeCore
) -> None:
    request = await sent(
        client,
        fake_core,
        input="Hi",
        text={"format": {"type": "json_object"}},
        max_output_tokens=50,
        temperature=0.5,
        top_p=0.9,
        user="u-1",
        metadata={"team": "search"},
        priority=3,
        store=True,
    )
    assert request.response_format.type == chat_pb2.RESPONSE_FORMAT_TYPE_JSON_OBJECT
    assert request.sampling.max_tokens == 50
    assert (request.sampling.temperature, request.sampling.top_p) == (0.5, 0.9)
    assert (request.user, dict(request.metadata), request.priority) == (
        "u-1",
        {"team": "search"},
        3,
    )
    assert not request.sampling.logprobs


async def test_safety_identifier_stands_for_a_missing_user(
    client: httpx.AsyncClient, fake_core: FakeCore
) -> None:
    assert (await sent(client, fake_core, input="Hi", safety_identifier="s-1")).user == "s-1"
    request = await sent(client, fake_core, input="Hi", safety_identifier="s-1", user="u-1")
    assert request.user == "u-1"


async def test_logprobs_are_asked_for_only_through_include(
    client: httpx.AsyncClient, fake_core: FakeCore
) -> None:
    request = await sent(client, fake_core, input="Hi", top_logprobs=2)
    assert not request.sampling.logprobs
    assert not request.sampling.HasField("top_logprobs")
    request = await sent(
        client, fake_core, input="Hi", top_logprobs=2, include=["message.output_text.logprobs"]
    )
    assert request.sampling.logprobs
    assert request.sampling.top_logprobs == 2


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"previous_response_id": "resp_1"}, "previous_response_id"),
        ({"conversation": "conv_1"}, "conversation"),
        ({"prompt": {"id": "pmpt_1"}}, "prompt"),
        ({"background": True}, "background"),
        ({"truncation": "auto"}, "truncation"),
        ({"reasoning": {"effort": "high"}}, "reasoning.effort"),
        ({"reasoning": {"summary": "auto"}}, "reasoning.summary"),
        ({"include": ["message.output_text.logprobs", "nope"]}, "include[1]"),
        ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"tools": [WEATHER, {"type": "file_search", "vector_store_ids": []}]}, "tools[1].type"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools[0].name"),
        ({"tools": [WEATHER], "tool_choice": {"type": "web_search_preview"}}, "tool_choice.type"),
        ({"tool_choice": "sometimes"}, "tool_choice"),
        ({"text": {"format": {"type": "xml"}}}, "text.format.type"),
        ({"text": {"verbosity": "low"}}, "text.verbosity"),
        ({"service_tier": "flex"}, "service_tier"),
        ({"prompt_cache_retention": "24h"}, "prompt_cache_retention"),
        ({"stream_options": {"include_obfuscation": True}}, "stream_options"),
        ({"metadata": {"n": 1}}, "metadata.n"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type"),
        ({"input": [{"type": "reasoning", "summary": []}]}, "input[0].type"),
        ({"input": [{"role": "tool", "content": "x"}]}, "input[0].role"),
        ({"input": [{"role": "user"}]}, "input[0].content"),
        (
            {"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]},
            "input[0].call_id",
        ),
        ({"input": [{"type": "function_call_output", "call_id": "c"}]}, "input[0].output"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]},
            "input[0].content[0].file_id",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_file", "file_url": "u"}]}]},
            "input[0].content[0].file_url",
        ),
        ({"input": [{"role": "user", "content": [{"type": "video"}]}]}, "input[0].content[0].type"),
        ({"input": 7}, "input"),
        ({"max_output_tokens": 0}, "max_output_tokens"),
    ],
)
async def test_unsupported_or_malformed_fields_are_400_naming_them(
    client: httpx.AsyncClient, fake_core: FakeCore, body: dict[str, Any], param: str
) -> None:
    error = await refusal(client, **{"input": "Hi", **body})
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    assert fake_core.seen.requests == []  # refused before any core call


async def test_missing_input_is_400(client: httpx.AsyncClient) -> None:
    error = await refusal(client)
    assert (error["param"], error["code"]) == ("input", "missing_required")


@pytest.mark.parametrize(
    "body",
    [
        {"background": False, "truncation": "disabled", "store": False},
        {"previous_response_id": None, "conversation": None, "prompt": None, "reasoning": None},
        {"reasoning": {"effort": None, "summary": None}},
        {"reasoning": {"effort": "none"}},
        {"include": ["reasoning.encrypted_content", "file_search_call.results"]},
        {"service_tier": "auto", "prompt_cache_key": "k", "max_tool_calls": 3, "safety": 1},
        {"text": {"verbosity": "medium"}, "prompt_cache_retention": "in_memory"},
    ],
)
async def test_defaults_nulls_and_unknown_fields_are_accepted(
    client: httpx.AsyncClient, fake_core: FakeCore, body: dict[str, Any]
) -> None:
    await sent(client, fake_core, input="Hi", **body)


@pytest.mark.parametrize(
    ("body", "param", "named"),
    [
        ({"max_output_tokens": 1 << 21}, "max_output_tokens", "'max_output_tokens'"),
        ({"tools": [{"type": "function", "name": "bad name"}]}, "tools[0].name", "'tools[0].name'"),
        (
            {"tools": [WEATHER, {"type": "function", "name": "get_weather"}]},
            "tools[1].name",
            "get_weather",
        ),
        (
            {"text": {"format": {"type": "json_schema", "name": "a b", "schema": {}}}},
            "text.format.name",
            "'text.format.name'",
        ),
        (
            {"text": {"format": {"type": "json_schema", "name": "x"}}},
            "text.format.schema",
            "'text.format.schema'",
        ),
        ({"tool_choice": {"type": "function", "name": "f"}}, "tool_choice", "'tool_choice'"),
        ({"input": []}, "input", "'input'"),
        ({"metadata": {"k": "v" * 600}}, "metadata", "'metadata'"),
        (
            {
                "instructions": "Be brief.",
                "input": [
                    {"role": "user", "content": "Hi"},
                    {"type": "function_call", "call_id": "c1", "name": "ok", "arguments": "{}"},
                    {"type": "function_call", "call_id": "c2", "name": "no!", "arguments": "{}"},
                ],
            },
            "input[2].name",
            "'input[2].name'",
        ),
        (
            {
                "input": [
                    {"role": "user", "content": "Hi"},
                    {"type": "function_call_output", "call_id": "", "output": "x"},
                ]
            },
            "input[1].call_id",
            "call_id",  # the core's text says 'tool_call_id'; the param is exact
        ),
    ],
)
async def test_the_cores_refusals_name_the_responses_field(
    client: httpx.AsyncClient, body: dict[str, Any], param: str, named: str
) -> None:
    error = await refusal(client, **{"input": "Hi", **body})
    assert error["param"] == param
    assert named in error["message"]


async def test_a_context_overflow_names_the_input(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/responses", headers=AUTH, json={"model": "too-long", "input": "Hi"}
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["param"], error["code"]) == ("input", "context_length_exceeded")
