"""End to end through `gpucloud up`: function tools with the official openai SDK, forced
and required calls whole and streamed, a conversation that goes on after the tool's
result, and the refusals of a tool_choice that cannot be honoured."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionMessageToolCall
from up_fixtures import LLAMA
from up_fixtures import api_key as api_key
from up_fixtures import cloud as cloud
from up_fixtures import recorder as recorder
from up_fixtures import sdk as sdk

pytestmark = pytest.mark.slow

# A schema with what a model most often gets wrong: an enum, integer bounds, a nested
# object with its own required members, and a bounded array.
BOOK_FLIGHT_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "origin": {"type": "string", "enum": ["AMS", "CDG", "JFK"]},
        "destination": {"type": "string", "description": "IATA airport code"},
        "passengers": {"type": "integer", "minimum": 1, "maximum": 9},
        "cabin": {"type": "string", "enum": ["economy", "premium", "business"]},
        "traveller": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "age": {"type": "integer", "minimum": 0, "maximum": 120},
                "frequent_flyer": {"type": "boolean"},
            },
            "required": ["name", "age"],
            "additionalProperties": False,
        },
        "stops": {
            "type": "array",
            "items": {"type": "string", "enum": ["LHR", "FRA", "MAD"]},
            "minItems": 1,
            "maxItems": 2,
        },
    },
    "required": ["origin", "destination", "passengers", "traveller", "stops"],
    "additionalProperties": False,
}
WEATHER_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
    "additionalProperties": False,
}
SCHEMAS = {"book_flight": BOOK_FLIGHT_PARAMETERS, "get_weather": WEATHER_PARAMETERS}
TOOLS: Any = [
    {
        "type": "function",
        "function": {
            "name": "book_flight",
            "description": "Book a flight for one traveller.",
            "parameters": BOOK_FLIGHT_PARAMETERS,
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The current weather in a city.",
            "parameters": WEATHER_PARAMETERS,
        },
    },
]
ASK: Any = [{"role": "user", "content": "Book me a flight from Amsterdam to Lisbon."}]
FORCE_BOOKING: Any = {"type": "function", "function": {"name": "book_flight"}}


def valid_arguments(name: str, arguments: str) -> dict[str, Any]:
    """The call's arguments parsed, after checking them against its tool's schema."""
    parsed = json.loads(arguments)
    jsonschema.Draft202012Validator(SCHEMAS[name]).validate(parsed)
    assert isinstance(parsed, dict)
    return parsed


def tool_calls_of(completion: ChatCompletion) -> list[ChatCompletionMessageToolCall]:
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.role == "assistant"
    calls = choice.message.tool_calls
    assert calls, choice.message
    functions = [call for call in calls if isinstance(call, ChatCompletionMessageToolCall)]
    assert functions == calls
    for call in functions:
        assert call.type == "function"
        assert call.id
        valid_arguments(call.function.name, call.function.arguments)
    assert len({call.id for call in functions}) == len(functions)
    return functions


def test_a_forced_function_is_called_with_arguments_valid_for_its_schema(
    sdk: openai.OpenAI,
) -> None:
    raw = sdk.chat.completions.with_raw_response.create(
        model=LLAMA, messages=ASK, tools=TOOLS, tool_choice=FORCE_BOOKING
    )
    body = raw.http_response.json()
    message = body["choices"][0]["message"]
    assert "content" in message and message["content"] is None, message
    calls = tool_calls_of(raw.parse())
    assert [call.function.name for call in calls] == ["book_flight"]


def test_a_forced_function_is_called_even_when_the_prompt_is_about_another(
    sdk: openai.OpenAI,
) -> None:
    weather: Any = [{"role": "user", "content": "What is the weather in Paris?"}]
    completion = sdk.chat.completions.create(
        model=LLAMA, messages=weather, tools=TOOLS, tool_choice=FORCE_BOOKING
    )
    assert [call.function.name for call in tool_calls_of(completion)] == ["book_flight"]


def test_required_calls_one_of_the_tools_with_valid_arguments(sdk: openai.OpenAI) -> None:
    names: set[str] = set()
    for seed in range(4):
        completion = sdk.chat.completions.create(
            model=LLAMA, messages=ASK, tools=TOOLS, tool_choice="required", seed=seed
        )
        calls = tool_calls_of(completion)
        names.update(call.function.name for call in calls)
        assert completion.usage is not None and completion.usage.completion_tokens > 0
    assert names <= set(SCHEMAS)


def test_without_parallel_calls_required_makes_exactly_one(sdk: openai.OpenAI) -> None:
    for seed in range(6):
        completion = sdk.chat.completions.create(
            model=LLAMA, messages=ASK, tools=TOOLS, tool_choice="required",
            parallel_tool_calls=False, seed=seed,
        )  # fmt: skip
        assert len(tool_calls_of(completion)) == 1


def test_streamed_tool_call_deltas_assemble_into_a_valid_call(sdk: openai.OpenAI) -> None:
    with sdk.chat.completions.stream(
        model=LLAMA, messages=ASK, tools=TOOLS, tool_choice=FORCE_BOOKING
    ) as stream:
        events = [event.type for event in stream]
        final = stream.get_final_completion()
    assert "tool_calls.function.arguments.done" in events
    calls = final.choices[0].message.tool_calls
    assert final.choices[0].finish_reason == "tool_calls"
    assert final.choices[0].message.content is None
    assert calls and [call.type for call in calls] == ["function"]
    call = calls[0]
    assert isinstance(call, ChatCompletionMessageToolCall)
    assert call.function.name == "book_flight"
    valid_arguments(call.function.name, call.function.arguments)


def test_raw_tool_call_chunks_carry_id_and_name_first_then_argument_fragments(
    sdk: openai.OpenAI,
) -> None:
    stream = sdk.chat.completions.create(
        model=LLAMA, messages=ASK, tools=TOOLS, tool_choice=FORCE_BOOKING, stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    pieces = []
    finish = []
    usage = None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            assert not choice.delta.content
            pieces.extend(choice.delta.tool_calls or [])
            if choice.finish_reason is not None:
                finish.append(choice.finish_reason)
    assert finish == ["tool_calls"]
    assert usage is not None and usage.completion_tokens > 0
    assert pieces and {piece.index for piece in pieces} == {0}
    first, rest = pieces[0], pieces[1:]
    assert first.id and first.type == "function"
    assert first.function is not None and first.function.name == "book_flight"
    for piece in rest:
        assert piece.id is None and (piece.function is None or piece.function.name is None)
    arguments = "".join((p.function.arguments or "") if p.function else "" for p in pieces)
    valid_arguments("book_flight", arguments)


def test_the_conversation_goes_on_in_text_after_the_tool_result(sdk: openai.OpenAI) -> None:
    first = sdk.chat.completions.create(
        model=LLAMA, messages=ASK, tools=TOOLS, tool_choice=FORCE_BOOKING
    )
    call = tool_calls_of(first)[0]
    result = {"booking": "KL1234", "status": "confirmed", "seat": "14C"}
    conversation: Any = [
        *ASK,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.function.name, "arguments": call.function.arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call.id, "content": json.dumps(result)},
    ]
    answer = sdk.chat.completions.create(
        model=LLAMA, messages=conversation, tools=TOOLS, max_tokens=40
    )
    choice = answer.choices[0]
    assert choice.finish_reason in ("stop", "length")
    assert choice.message.tool_calls is None
    assert choice.message.content and choice.message.content.strip()
    assert answer.usage is not None
    # The tool call and its result are part of the prompt, so they count.
    assert first.usage is not None and answer.usage.prompt_tokens > first.usage.prompt_tokens


def test_tool_choice_none_answers_in_text_although_tools_are_given(sdk: openai.OpenAI) -> None:
    answer = sdk.chat.completions.create(
        model=LLAMA, messages=ASK, tools=TOOLS, tool_choice="none", max_tokens=16
    )
    choice = answer.choices[0]
    assert choice.finish_reason in ("stop", "length")
    assert choice.message.tool_calls is None
    assert choice.message.content


def refusal(call: Any) -> openai.BadRequestError:
    with pytest.raises(openai.BadRequestError) as caught:
        call()
    body = caught.value.body
    assert isinstance(body, dict) and body["type"] == "invalid_request_error", body
    assert caught.value.param == body["param"]
    return caught.value


def test_tool_choice_naming_an_unknown_function_is_refused_naming_tool_choice(
    sdk: openai.OpenAI,
) -> None:
    unknown: Any = {"type": "function", "function": {"name": "cancel_flight"}}
    error = refusal(
        lambda: sdk.chat.completions.create(
            model=LLAMA, messages=ASK, tools=TOOLS, tool_choice=unknown
        )
    )
    assert error.param is not None and error.param.startswith("tool_choice"), error.body


def test_tool_choice_without_tools_is_refused_naming_tool_choice(sdk: openai.OpenAI) -> None:
    for choice in ("required", FORCE_BOOKING):
        error = refusal(
            lambda choice=choice: sdk.chat.completions.create(
                model=LLAMA, messages=ASK, tool_choice=choice
            )
        )
        assert error.param is not None and error.param.startswith("tool_choice"), error.body
