"""End to end through `gpucloud up`: the Responses API with the official openai SDK,
whole and streamed, a forced function tool and the turn that hands back its output,
and structured output through responses.parse()."""

from __future__ import annotations

import json
from typing import Any, Literal

import jsonschema
import openai
import pydantic
import pytest
from openai.types.responses import Response, ResponseFunctionToolCall
from up_fixtures import LLAMA
from up_fixtures import api_key as api_key
from up_fixtures import cloud as cloud
from up_fixtures import recorder as recorder
from up_fixtures import sdk as sdk

pytestmark = pytest.mark.slow

LOOKUP_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "isbn": {"type": "string"},
        "format": {"type": "string", "enum": ["hardcover", "paperback", "ebook"]},
        "copies": {"type": "integer", "minimum": 1, "maximum": 5},
        "shipping": {
            "type": "object",
            "properties": {
                "country": {"type": "string", "enum": ["NL", "PT"]},
                "express": {"type": "boolean"},
            },
            "required": ["country", "express"],
            "additionalProperties": False,
        },
    },
    "required": ["isbn", "format", "copies", "shipping"],
    "additionalProperties": False,
}
TOOLS: Any = [
    {
        "type": "function",
        "name": "order_book",
        "description": "Order copies of a book.",
        "parameters": LOOKUP_PARAMETERS,
        "strict": True,
    }
]
FORCE_ORDER: Any = {"type": "function", "name": "order_book"}
ASK = "Order two paperbacks of ISBN 978-0140449136 to Lisbon."


def check_usage(response: Response) -> None:
    usage = response.usage
    assert usage is not None
    assert usage.input_tokens > 0 and usage.output_tokens > 0
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens


def test_a_response_has_output_text_and_usage(sdk: openai.OpenAI) -> None:
    response = sdk.responses.create(model=LLAMA, input="Say hello.", instructions="Be brief.")
    assert response.object == "response" and response.id.startswith("resp")
    assert response.status == "completed" and response.incomplete_details is None
    assert response.model == LLAMA
    assert response.output_text.strip()
    messages = [item for item in response.output if item.type == "message"]
    assert len(messages) == 1 and messages[0].role == "assistant"
    check_usage(response)


def test_max_output_tokens_bounds_the_answer_and_says_so(sdk: openai.OpenAI) -> None:
    for stream in (False, True):
        if stream:
            events = list(
                sdk.responses.create(
                    model=LLAMA, input="Say hello.", max_output_tokens=16, stream=True
                )
            )
            last = events[-1]
            assert last.type in ("response.completed", "response.incomplete")
            response = last.response
            assert last.type == f"response.{response.status}"
        else:
            response = sdk.responses.create(model=LLAMA, input="Say hello.", max_output_tokens=16)
        assert response.usage is not None and 0 < response.usage.output_tokens <= 16
        assert response.output_text
        if response.status == "incomplete":
            assert response.incomplete_details is not None
            assert response.incomplete_details.reason == "max_output_tokens"
            assert response.usage.output_tokens == 16
        else:
            assert response.status == "completed"


def test_a_message_list_input_is_answered(sdk: openai.OpenAI) -> None:
    response = sdk.responses.create(
        model=LLAMA,
        input=[
            {"role": "developer", "content": "Answer in one line."},
            {"role": "user", "content": [{"type": "input_text", "text": "Name a river."}]},
        ],
    )
    assert response.status == "completed"
    assert response.output_text


def test_a_streamed_response_sends_the_documented_events_in_order(sdk: openai.OpenAI) -> None:
    stream = sdk.responses.create(model=LLAMA, input="Say hello.", stream=True)
    events = list(stream)
    kinds = [event.type for event in events]
    assert kinds[0] == "response.created"
    assert kinds[-1] == "response.completed"
    assert "response.output_text.delta" in kinds
    assert kinds.index("response.output_item.added") < kinds.index("response.output_text.delta")
    numbers = [event.sequence_number for event in events]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    text = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    completed = events[-1]
    assert completed.type == "response.completed"
    assert text and completed.response.output_text == text
    check_usage(completed.response)


def test_the_sdk_stream_helper_assembles_the_final_response(sdk: openai.OpenAI) -> None:
    with sdk.responses.stream(model=LLAMA, input="Say hello.") as stream:
        deltas = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text != ""


def function_call_of(response: Response) -> ResponseFunctionToolCall:
    calls = [item for item in response.output if isinstance(item, ResponseFunctionToolCall)]
    assert len(calls) == 1, response.output
    call = calls[0]
    assert call.type == "function_call" and call.name == "order_book" and call.call_id
    jsonschema.Draft202012Validator(LOOKUP_PARAMETERS).validate(json.loads(call.arguments))
    return call


def test_a_forced_function_tool_gives_a_function_call_item(sdk: openai.OpenAI) -> None:
    response = sdk.responses.create(model=LLAMA, input=ASK, tools=TOOLS, tool_choice=FORCE_ORDER)
    function_call_of(response)
    assert response.output_text == ""
    check_usage(response)


def test_a_streamed_function_call_sends_its_argument_events(sdk: openai.OpenAI) -> None:
    stream = sdk.responses.create(
        model=LLAMA, input=ASK, tools=TOOLS, tool_choice=FORCE_ORDER, stream=True
    )
    events = list(stream)
    kinds = [event.type for event in events]
    assert "response.function_call_arguments.delta" in kinds
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert len(done) == 1
    deltas = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    assert "".join(deltas) == done[0].arguments
    completed = events[-1]
    assert completed.type == "response.completed"
    assert function_call_of(completed.response).arguments == done[0].arguments


def test_the_function_output_is_handed_back_and_answered_in_text(sdk: openai.OpenAI) -> None:
    first = sdk.responses.create(model=LLAMA, input=ASK, tools=TOOLS, tool_choice=FORCE_ORDER)
    call = function_call_of(first)
    follow_up: Any = [
        {"role": "user", "content": ASK},
        {
            "type": "function_call",
            "call_id": call.call_id,
            "name": call.name,
            "arguments": call.arguments,
        },
        {
            "type": "function_call_output",
            "call_id": call.call_id,
            "output": json.dumps({"order": "B-778", "eta_days": 3}),
        },
    ]
    answer = sdk.responses.create(model=LLAMA, input=follow_up, tools=TOOLS)
    assert answer.output_text.strip()
    assert not [item for item in answer.output if item.type == "function_call"]
    assert answer.usage is not None and first.usage is not None
    assert answer.usage.input_tokens > first.usage.input_tokens


class Review(pydantic.BaseModel):
    title: str
    stars: int
    verdict: Literal["read", "skip"]
    quotes: list[str]
    translator: str | None


def test_parse_with_a_text_format_returns_an_instance(sdk: openai.OpenAI) -> None:
    response = sdk.responses.parse(model=LLAMA, input="Review The Odyssey.", text_format=Review)
    review = response.output_parsed
    assert isinstance(review, Review)
    assert Review.model_validate_json(response.output_text) == review


def test_a_tool_choice_naming_an_unknown_function_is_a_400(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.responses.create(
            model=LLAMA, input=ASK, tools=TOOLS,
            tool_choice={"type": "function", "name": "cancel_order"},
        )  # fmt: skip
    assert caught.value.param is not None and caught.value.param.startswith("tool_choice")
