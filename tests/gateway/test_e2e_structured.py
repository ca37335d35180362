"""End to end through `gpucloud up`: structured output (the SDK's parse() with a Pydantic
model, json_schema, json_object), logprobs, and the 400s that name the sampling or
prompt field at fault, streamed or not."""

from __future__ import annotations

import enum
import json
from typing import Any, Literal

import jsonschema
import openai
import pydantic
import pytest
from openai.types.chat import ChatCompletionTokenLogprob
from up_fixtures import LLAMA, served
from up_fixtures import api_key as api_key
from up_fixtures import cloud as cloud
from up_fixtures import recorder as recorder
from up_fixtures import sdk as sdk

from gpucloud_common.tokens import CHARS_PER_TOKEN

pytestmark = pytest.mark.slow

HELLO: Any = [{"role": "user", "content": "Say hello."}]


class Priority(enum.Enum):
    LOW = "low"
    HIGH = "high"


class Address(pydantic.BaseModel):
    street: str
    city: str
    country: Literal["NL", "FR", "PT"]


class Ticket(pydantic.BaseModel):
    """A support ticket: a nested model, an enum, a Literal, a list and an optional."""

    title: str
    priority: Priority
    tags: list[str]
    address: Address
    assignee: str | None
    estimate_hours: int


TICKET: Any = [{"role": "user", "content": "File a ticket: the lift in Lisbon is stuck."}]
# A schema that is not the SDK's making: bounds, an enum, a required nested array.
INVENTORY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "warehouse": {"type": "string", "enum": ["north", "south"]},
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "sku": {"type": "string"},
                    "count": {"type": "integer", "minimum": 0, "maximum": 500},
                },
                "required": ["sku", "count"],
                "additionalProperties": False,
            },
        },
        "audited": {"type": "boolean"},
    },
    "required": ["warehouse", "items", "audited"],
    "additionalProperties": False,
}


def test_parse_returns_an_instance_of_the_pydantic_model(sdk: openai.OpenAI) -> None:
    completion = sdk.chat.completions.parse(model=LLAMA, messages=TICKET, response_format=Ticket)
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.refusal is None
    ticket = choice.message.parsed
    assert isinstance(ticket, Ticket)
    assert isinstance(ticket.address, Address)
    assert isinstance(ticket.priority, Priority)
    assert all(isinstance(tag, str) for tag in ticket.tags)
    # The text is the JSON the model was parsed from, not some other rendering.
    assert Ticket.model_validate_json(choice.message.content or "") == ticket


def test_a_streamed_parse_assembles_an_instance_of_the_pydantic_model(sdk: openai.OpenAI) -> None:
    with sdk.chat.completions.stream(
        model=LLAMA, messages=TICKET, response_format=Ticket
    ) as stream:
        deltas = [event.delta for event in stream if event.type == "content.delta"]
        final = stream.get_final_completion()
    assert len(deltas) > 1
    ticket = final.choices[0].message.parsed
    assert isinstance(ticket, Ticket)
    assert "".join(deltas) == final.choices[0].message.content


def test_json_schema_output_validates_against_the_schema(sdk: openai.OpenAI) -> None:
    for seed in range(3):
        completion = sdk.chat.completions.create(
            model=LLAMA,
            messages=[{"role": "user", "content": "Count the stock."}],
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "inventory", "schema": INVENTORY_SCHEMA, "strict": True},
            },
            seed=seed,
        )
        assert completion.choices[0].finish_reason == "stop"
        value = json.loads(completion.choices[0].message.content or "")
        jsonschema.Draft202012Validator(INVENTORY_SCHEMA).validate(value)


def test_json_object_output_is_a_json_object(sdk: openai.OpenAI) -> None:
    asked: Any = [{"role": "user", "content": "Describe Lisbon as a JSON object."}]
    for stream in (False, True):
        if stream:
            chunks = sdk.chat.completions.create(
                model=LLAMA, messages=asked, response_format={"type": "json_object"}, stream=True
            )
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        else:
            completion = sdk.chat.completions.create(
                model=LLAMA, messages=asked, response_format={"type": "json_object"}
            )
            assert completion.choices[0].finish_reason == "stop"
            text = completion.choices[0].message.content or ""
        assert isinstance(json.loads(text), dict), text


def check_logprobs(content: str, entries: list[ChatCompletionTokenLogprob], top: int) -> None:
    assert entries
    assert "".join(entry.token for entry in entries) == content
    for entry in entries:
        assert entry.logprob <= 0
        alternatives = [alt.logprob for alt in entry.top_logprobs]
        assert len(alternatives) == top
        assert all(logprob <= 0 for logprob in alternatives)
        assert alternatives == sorted(alternatives, reverse=True)
        assert len({alt.token for alt in entry.top_logprobs}) == top
        if entry.bytes is not None:
            assert bytes(entry.bytes) == entry.token.encode()


def test_logprobs_cover_every_token_with_the_top_three_sorted(sdk: openai.OpenAI) -> None:
    completion = sdk.chat.completions.create(
        model=LLAMA, messages=HELLO, logprobs=True, top_logprobs=3, max_tokens=24
    )
    choice = completion.choices[0]
    assert choice.logprobs is not None and choice.logprobs.content is not None
    check_logprobs(choice.message.content or "", choice.logprobs.content, 3)
    assert completion.usage is not None
    assert len(choice.logprobs.content) == completion.usage.completion_tokens


def test_streamed_logprobs_arrive_with_the_text_they_score(sdk: openai.OpenAI) -> None:
    stream = sdk.chat.completions.create(
        model=LLAMA, messages=HELLO, logprobs=True, top_logprobs=3, max_tokens=24, stream=True
    )
    text, entries = "", []
    for chunk in stream:
        for choice in chunk.choices:
            piece = choice.delta.content or ""
            scored = (choice.logprobs.content or []) if choice.logprobs else []
            assert "".join(entry.token for entry in scored) == piece
            text += piece
            entries.extend(scored)
    check_logprobs(text, entries, 3)


def test_without_logprobs_none_are_returned(sdk: openai.OpenAI) -> None:
    raw = sdk.chat.completions.with_raw_response.create(model=LLAMA, messages=HELLO, max_tokens=8)
    assert raw.http_response.json()["choices"][0]["logprobs"] is None


def refusal(call: Any) -> openai.BadRequestError:
    with pytest.raises(openai.BadRequestError) as caught:
        call()
    body = caught.value.body
    assert isinstance(body, dict) and body["type"] == "invalid_request_error", body
    assert caught.value.param == body["param"]
    return caught.value


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"presence_penalty": 5}, "presence_penalty"),
        ({"frequency_penalty": -2.5}, "frequency_penalty"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
    ],
)
def test_an_out_of_bounds_value_is_refused_naming_its_field(
    sdk: openai.OpenAI, params: dict[str, Any], param: str
) -> None:
    for stream in (False, True):
        error = refusal(
            lambda stream=stream: sdk.chat.completions.create(
                model=LLAMA, messages=HELLO, stream=stream, **params
            )
        )
        assert error.param == param, error.body


def test_a_streamed_prompt_longer_than_the_context_is_a_400_before_any_chunk(
    sdk: openai.OpenAI,
) -> None:
    """The core admits a request before its first event, so even a stream that cannot
    fit is refused with a status, not cut off with an error event."""
    chat_models = [spec for spec in served(sdk) if not spec.embeds]
    smallest = min(chat_models, key=lambda spec: spec.max_context)
    words = "lorem ipsum dolor sit amet "
    prompt = words * (CHARS_PER_TOKEN * (smallest.max_context + 64) // len(words) + 1)
    assert len(prompt) > CHARS_PER_TOKEN * smallest.max_context
    long: Any = [{"role": "user", "content": prompt}]
    for stream in (True, False):
        with pytest.raises(openai.BadRequestError) as caught:
            sdk.chat.completions.create(
                model=smallest.id, messages=long, max_tokens=16, stream=stream
            )
        assert caught.value.code == "context_length_exceeded", caught.value.body
        assert caught.value.param == "messages", caught.value.body
