"""Every documented chat request field: honoured (as the proto the core receives) or
refused with a 400 naming it; shape errors are the gateway's, value errors the core's."""

from __future__ import annotations

import json
from typing import Any

import conformance
import httpx
import pytest
from gateway_fakes import GOOD_KEY, MODEL, FakeCore

from gpucloud.v1 import chat_pb2

AUTH = {"authorization": f"Bearer {GOOD_KEY}"}
HELLO = [{"role": "user", "content": "Hi"}]
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"enum": ["C", "F"]}},
    "required": ["city"],
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": WEATHER_SCHEMA,
        "strict": True,
    },
}
TIME = {"type": "function", "function": {"name": "get_time"}}


def chat(model: str = MODEL, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": HELLO, **extra}


def tool(**function: Any) -> dict[str, Any]:
    return {"type": "function", "function": function}


def named(**function: Any) -> dict[str, Any]:
    """`tool_choice` naming a function."""
    return {"tools": [WEATHER], "tool_choice": {"type": "function", "function": function}}


def schema_format(**json_schema: Any) -> dict[str, Any]:
    return {"response_format": {"type": "json_schema", "json_schema": json_schema}}


def parts(*content: Any) -> dict[str, Any]:
    """A user message of these content parts."""
    return {"messages": [{"role": "user", "content": list(content)}]}


def calls(*tool_calls: Any) -> dict[str, Any]:
    """An assistant message with these tool calls, after the user's."""
    return {"messages": [*HELLO, {"role": "assistant", "tool_calls": list(tool_calls)}]}


def call(id: str | None = "c", **function: Any) -> dict[str, Any]:
    out = {"type": "function", "function": function}
    return out if id is None else {"id": id, **out}


async def sent(client: httpx.AsyncClient, fake_core: FakeCore, body: dict[str, Any]) -> Any:
    """What the core received for `body`, which it must have answered."""
    response = await client.post("/v1/chat/completions", headers=AUTH, json=body)
    assert response.status_code == 200, response.text
    return fake_core.seen.requests[-1]


async def refusal(client: httpx.AsyncClient, body: dict[str, Any], stream: bool = False) -> Any:
    response = await client.post(
        "/v1/chat/completions", headers=AUTH, json={**body, "stream": stream}
    )
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/json"
    return conformance.error(response.json())


async def test_sampling_fields_reach_the_core(
    client: httpx.AsyncClient, fake_core: FakeCore
) -> None:
    body = chat(
        frequency_penalty=0.5, presence_penalty=-1.5, logit_bias={"42": -100, "7": 5.5},
        logprobs=True, top_logprobs=2, max_completion_tokens=50, max_tokens=10, n=2, seed=-3,
        stop=["END", "STOP"], temperature=0.2, top_p=0.9,
    )  # fmt: skip
    sampling = (await sent(client, fake_core, body)).sampling
    assert sampling.frequency_penalty == 0.5
    assert sampling.presence_penalty == -1.5
    assert dict(sampling.logit_bias) == {42: -100.0, 7: 5.5}
    assert sampling.logprobs
    assert sampling.top_logprobs == 2
    assert sampling.max_tokens == 50  # max_completion_tokens wins
    assert (sampling.n, sampling.seed, list(sampling.stop)) == (2, -3, ["END", "STOP"])
    assert sampling.temperature == pytest.approx(0.2)
    assert sampling.top_p == pytest.approx(0.9)


async def test_unset_sampling_fields_stay_unset(
    client: httpx.AsyncClient, fake_core: FakeCore
) -> None:
    sampling = (await sent(client, fake_core, chat(max_tokens=10))).sampling
    for name in ("temperature", "top_p", "seed", "presence_penalty", "frequency_penalty"):
        assert not sampling.HasField(name), name
    assert not sampling.HasField("top_logprobs")
    assert (sampling.max_tokens, sampling.n, sampling.logprobs) == (10, 1, False)
    assert not sampling.logit_bias


async def test_request_fields_reach_the_core(
    client: httpx.AsyncClient, fake_core: FakeCore
) -> None:
    body = chat(user="u-1", metadata={"team": "ml", "run": "7"}, priority=2)
    request = await sent(client, fake_core, body)
    assert (request.user, request.priority) == ("u-1", 2)
    assert dict(request.metadata) == {"team": "ml", "run": "7"}
    unset = await sent(client, fake_core, chat())
    assert not unset.HasField("priority") and not unset.metadata and unset.user == ""


async def test_safety_identifier_stands_for_a_missing_user(
    client: httpx.AsyncClient, fake_core: FakeCore
) -> None:
    assert (await sent(client, fake_core, chat(safety_identifier="s-1"))).user == "s-1"
    both = chat(safety_identifier="s-1", user="u-1")
    assert (await sent(client, fake_core, both)).user == "u-1"


async def test_tools_travel_with_their_schema_as_json_text(
    client: httpx.AsyncClient, fake_core: FakeCore
) -> None:
    request = await sent(client, fake_core, chat(tools=[WEATHER, TIME], parallel_tool_calls=False))
    weather, clock = request.tools
    assert (weather.name, weather.description, weather.strict) == (
        "get_weather",
        "Weather in a city",
        True,
    )
    assert json.loads(weather.parameters_json) == WEATHER_SCHEMA
    assert list(json.loads(weather.parameters_json)) == ["type", "properties", "required"]
    assert (clock.name, clock.description, clock.parameters_json) == ("get_time", "", "")
    assert not clock.HasField("strict")
    assert request.HasField("parallel_tool_calls") and not request.parallel_tool_calls
    assert not request.HasField("tool_choice")


@pytest.mark.parametrize(
    ("choice", "mode", "function"),
    [
        ("none", chat_pb2.TOOL_CHOICE_MODE_NONE, ""),
        ("auto", chat_pb2.TOOL_CHOICE_MODE_AUTO, ""),
        ("required", chat_pb2.TOOL_CHOICE_MODE_REQUIRED, ""),
        (
            {"type": "function", "function": {"name": "get_time"}},
            chat_pb2.TOOL_CHOICE_MODE_FUNCTION,
            "get_time",
        ),
    ],
)
async def test_tool_choice_maps_to_its_mode(
    client: httpx.AsyncClient, fake_core: FakeCore, choice: Any, mode: int, function: str
) -> None:
    request = await sent(client, fake_core, chat(tools=[WEATHER, TIME], tool_choice=choice))
    assert (request.tool_choice.mode, request.tool_choice.function) == (mode, function)


@pytest.mark.parametrize(
    ("response_format", "expected"),
    [
        ({"type": "text"}, chat_pb2.ResponseFormat(type=chat_pb2.RESPONSE_FORMAT_TYPE_TEXT)),
        (
            {"type": "json_object"},
            chat_pb2.ResponseFormat(type=chat_pb2.RESPONSE_FORMAT_TYPE_JSON_OBJECT),
        ),
        (
            {
                "type": "json_schema",
                "json_schema": {
                    "name": "person",
                    "description": "A person",
                    "schema": {"type": "object", "properties": {"age": {"type": "integer"}}},
                    "strict": False,
                },
            },
            chat_pb2.ResponseFormat(
                type=chat_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA,
                name="person",
                description="A person",
                schema_json='{"type":"object","properties":{"age":{"type":"integer"}}}',
                strict=False,
            ),
        ),
    ],
)
async def test_response_format_maps_to_the_contract(
    client: httpx.AsyncClient,
    fake_core: FakeCore,
    response_format: dict[str, Any],
    expected: chat_pb2.ResponseFormat,
) -> None:
    request = await sent(client, fake_core, chat(response_format=response_format))
    assert request.response_format == expected


async def test_assistant_tool_calls_and_tool_answers_travel(
    client: httpx.AsyncClient, fake_core: FakeCore
) -> None:
    call = {
        "id": "call_9",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    }
    messages = [
        {"role": "developer", "content": "Be brief.", "name": "ops"},
        *HELLO,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_9", "content": [{"type": "text", "text": "21 C"}]},
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]},
        {"role": "assistant", "content": "", "refusal": "Still no."},
    ]
    request = await sent(client, fake_core, chat(messages=messages))
    developer, _, calling, tool, refusing, refusing_again = request.messages
    assert (developer.role, developer.content, developer.name) == ("developer", "Be brief.", "ops")
    assert calling.content == ""
    assert list(calling.tool_calls) == [
        chat_pb2.ToolCall(id="call_9", name="get_weather", arguments='{"city": "Paris"}')
    ]
    assert (tool.role, tool.tool_call_id, tool.content) == ("tool", "call_9", "21 C")
    assert not tool.parts  # text parts are joined into content
    assert (refusing.content, refusing.refusal) == ("", "No.")
    assert refusing_again.refusal == "Still no."


async def test_media_parts_travel_in_order_beside_the_joined_text(
    client: httpx.AsyncClient, fake_core: FakeCore
) -> None:
    content = [
        {"type": "text", "text": "What is "},
        {"type": "image_url", "image_url": {"url": "https://x.test/cat.png", "detail": "low"}},
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
        {"type": "file", "file": {"file_id": "file-1", "filename": "a.pdf"}},
        {"type": "text", "text": "this?"},
    ]
    request = await sent(client, fake_core, chat(messages=[{"role": "user", "content": content}]))
    message = request.messages[0]
    assert message.content == "What is this?"
    assert [p.WhichOneof("part") for p in message.parts] == [
        "text", "image_url", "input_audio", "file", "text"
    ]  # fmt: skip
    assert message.parts[1].image_url == chat_pb2.ImageUrl(
        url="https://x.test/cat.png", detail="low"
    )
    assert message.parts[2].input_audio == chat_pb2.InputAudio(data="UklGRg==", format="wav")
    assert message.parts[3].file == chat_pb2.FileInput(file_id="file-1", filename="a.pdf")


@pytest.mark.parametrize(
    "body",
    [
        chat(modalities=["text"]),
        chat(store=False),
        chat(service_tier="auto"),
        chat(service_tier="default"),
        chat(reasoning_effort="none"),
        chat(verbosity="medium"),
        chat(prompt_cache_key="conversation-7"),
        chat(audio=None, functions=None, function_call=None, prediction=None),
        chat(web_search_options=None, stream_options=None, stream=False),
        chat(top_k=40, repetition_penalty=1.1, guided_json={}),  # undocumented: ignored
    ],
    ids=[
        "modalities-text", "store-false", "service-tier-auto", "service-tier-default",
        "reasoning-none", "verbosity-medium", "prompt-cache-key", "nulls", "more-nulls",
        "undocumented",
    ],
)  # fmt: skip
async def test_unsupported_fields_pass_when_they_ask_for_what_gpucloud_does(
    client: httpx.AsyncClient, fake_core: FakeCore, body: dict[str, Any]
) -> None:
    await sent(client, fake_core, body)


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"function_call": "auto"}, "function_call"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"prediction": {"type": "content", "content": "x"}}, "prediction"),
        ({"reasoning_effort": "high"}, "reasoning_effort"),
        ({"service_tier": "flex"}, "service_tier"),
        ({"store": True}, "store"),
        ({"verbosity": "low"}, "verbosity"),
        ({"web_search_options": {}}, "web_search_options"),
        (
            {"messages": [*HELLO, {"role": "assistant", "function_call": {"name": "f"}}]},
            "messages[1].function_call",
        ),
        (
            {"messages": [*HELLO, {"role": "assistant", "audio": {"id": "a1"}}]},
            "messages[1].audio",
        ),
    ],
)
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_documented_fields_gpucloud_cannot_honour_are_refused_by_name(
    client: httpx.AsyncClient,
    fake_core: FakeCore,
    extra: dict[str, Any],
    param: str,
    stream: bool,
) -> None:
    error = await refusal(client, chat(**extra), stream)
    assert (error["param"], error["code"]) == (param, "unsupported_parameter")
    assert param in error["message"]
    assert fake_core.seen.requests == []  # refused before any call


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"tools": {"type": "function"}}, "tools"),
        ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools[0].type"),
        ({"tools": [WEATHER, {"type": "function"}]}, "tools[1].function"),
        ({"tools": [WEATHER, tool()]}, "tools[1].function.name"),
        ({"tools": [tool(name="f", parameters="{}")]}, "tools[0].function.parameters"),
        ({"tools": [tool(name="f", strict=1)]}, "tools[0].function.strict"),
        ({"tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice"),
        ({"tools": [WEATHER], "tool_choice": 1}, "tool_choice"),
        (named(), "tool_choice.function.name"),
        ({"tools": [WEATHER], "tool_choice": {"type": "allowed_tools"}}, "tool_choice.type"),
        ({"parallel_tool_calls": "yes"}, "parallel_tool_calls"),
        ({"response_format": {"type": "xml"}}, "response_format.type"),
        ({"response_format": {"json_schema": {}}}, "response_format.type"),
        ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
        (schema_format(schema={}), "response_format.json_schema.name"),
        ({"logit_bias": {"hello": 1}}, "logit_bias"),
        ({"logit_bias": {"1": "high"}}, "logit_bias"),
        ({"logit_bias": [1]}, "logit_bias"),
        ({"metadata": {"run": 7}}, "metadata.run"),
        ({"logprobs": "yes"}, "logprobs"),
        ({"top_logprobs": -1}, "top_logprobs"),
        ({"stream_options": {"include_obfuscation": True}}, "stream_options"),
        ({"stream_options": {"include_obfuscation": "no"}}, "stream_options.include_obfuscation"),
        (parts({"text": "x"}), "messages[0].content[0].type"),
        (parts({"type": "image_url", "image_url": {}}), "messages[0].content[0].image_url.url"),
        (
            parts({"type": "input_audio", "input_audio": {"data": "x"}}),
            "messages[0].content[0].input_audio.format",
        ),
        ({"messages": [*HELLO, {"role": "user", "content": ["x"]}]}, "messages[1].content[0]"),
        ({"messages": [*HELLO, {"role": "user", "content": 7}]}, "messages[1].content"),
        (calls(call(name="f")), "messages[1].tool_calls[0].function.arguments"),
        (calls(call(None, name="f", arguments="{}")), "messages[1].tool_calls[0].id"),
        (calls({"id": "c", "function": {"name": "f"}}), "messages[1].tool_calls[0].type"),
        ({"messages": [*HELLO, {"role": "assistant", "tool_calls": {}}]}, "messages[1].tool_calls"),
        ({"messages": [*HELLO, {"role": "tool", "tool_call_id": 3}]}, "messages[1].tool_call_id"),
        ({"messages": [HELLO[0], None]}, "messages[1]"),
    ],
)  # fmt: skip
async def test_shape_errors_are_the_gateways_400_naming_the_param(
    client: httpx.AsyncClient, fake_core: FakeCore, extra: dict[str, Any], param: str
) -> None:
    error = await refusal(client, chat(**extra))
    assert error["param"] == param, error
    assert error["type"] == "invalid_request_error"
    assert fake_core.seen.requests == []


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        (named(name="nope"), "tool_choice"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": [WEATHER, WEATHER]}, "tools[1].function.name"),
        ({"tools": [tool(name="no spaces")]}, "tools[0].function.name"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"logit_bias": {"5": 101}}, "logit_bias"),
        ({"logit_bias": {"-5": 1}}, "logit_bias"),
        ({"presence_penalty": 2.5}, "presence_penalty"),
        ({"frequency_penalty": -3}, "frequency_penalty"),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
        (schema_format(name="x"), "response_format.json_schema.schema"),
        ({"messages": [*HELLO, {"role": "tool", "content": "x"}]}, "messages[1].tool_call_id"),
        (calls(call("", name="f", arguments="{}")), "messages[1].tool_calls[0].id"),
    ],
)  # fmt: skip
async def test_value_errors_are_the_cores_400_naming_the_param(
    client: httpx.AsyncClient, fake_core: FakeCore, extra: dict[str, Any], param: str
) -> None:
    error = await refusal(client, chat(**extra))
    assert error["param"] == param, error
    assert len(fake_core.seen.requests) == 1  # the gateway passed it on; the core said no


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"tools": [WEATHER]}, "tools"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"logprobs": True}, "logprobs"),
        (
            parts(
                {"type": "text", "text": "x"},
                {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}},
            ),
            "messages[0].content[1]",
        ),
    ],
)  # fmt: skip
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_features_no_worker_declares_are_refused_at_admission(
    client: httpx.AsyncClient, extra: dict[str, Any], param: str, stream: bool
) -> None:
    error = await refusal(client, chat("text-only", **extra), stream)
    assert (error["param"], error["code"]) == (param, "unsupported_parameter")
