"""The core's bounds on the wider request: each violation is refused naming its field."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gpucloud.v1 import chat_pb2, scheduler_pb2
from gpucloud_server.servicers.validation import (
    FieldError,
    check_chat_request,
    check_completion_request,
    check_embedding_request,
)

TOOL = chat_pb2.Tool(name="lookup", parameters_json=json.dumps({"type": "object"}))


def chat(**fields: Any) -> scheduler_pb2.CreateChatCompletionRequest:
    fields.setdefault("model", "m")
    fields.setdefault("messages", [chat_pb2.ChatMessage(role="user", content="hi")])
    return scheduler_pb2.CreateChatCompletionRequest(**fields)


def sampling(**fields: Any) -> chat_pb2.SamplingParams:
    return chat_pb2.SamplingParams(**fields)


def choice(mode: int, function: str = "") -> chat_pb2.ToolChoice:
    return chat_pb2.ToolChoice(mode=mode, function=function)  # type: ignore[arg-type]


REFUSED = {
    "presence_penalty": chat(sampling=sampling(presence_penalty=5.0)),
    "frequency_penalty": chat(sampling=sampling(frequency_penalty=-2.5)),
    "nan_penalty": chat(sampling=sampling(presence_penalty=float("nan"))),
    "logit_bias": chat(sampling=sampling(logit_bias={7: 101.0})),
    "top_logprobs": chat(sampling=sampling(top_logprobs=2)),  # without logprobs
    "top_logprobs_high": chat(sampling=sampling(logprobs=True, top_logprobs=21)),
    "tool_choice_without_tools": chat(tool_choice=choice(chat_pb2.TOOL_CHOICE_MODE_AUTO)),
    "tool_choice_unknown": chat(
        tools=[TOOL], tool_choice=choice(chat_pb2.TOOL_CHOICE_MODE_FUNCTION, "nope")
    ),
    "tool_name": chat(tools=[chat_pb2.Tool(name="has space")]),
    "tool_twice": chat(tools=[TOOL, TOOL]),
    "tool_schema": chat(tools=[chat_pb2.Tool(name="f", parameters_json="[1]")]),
    "schema": chat(
        response_format=chat_pb2.ResponseFormat(
            type=chat_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA, name="s", schema_json="{"
        )
    ),
    "schema_name": chat(
        response_format=chat_pb2.ResponseFormat(
            type=chat_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA, schema_json="{}"
        )
    ),
    "tool_message": chat(messages=[chat_pb2.ChatMessage(role="tool", content="42")]),
    "user_tool_calls": chat(
        messages=[
            chat_pb2.ChatMessage(
                role="user", tool_calls=[chat_pb2.ToolCall(id="c", name="f", arguments="{}")]
            )
        ]
    ),
    "metadata": chat(metadata={f"k{i}": "v" for i in range(17)}),
}
PARAMS = {
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
    "nan_penalty": "presence_penalty",
    "logit_bias": "logit_bias",
    "top_logprobs": "top_logprobs",
    "top_logprobs_high": "top_logprobs",
    "tool_choice_without_tools": "tool_choice",
    "tool_choice_unknown": "tool_choice",
    "tool_name": "tools[0].function.name",
    "tool_twice": "tools[1].function.name",
    "tool_schema": "tools[0].function.parameters",
    "schema": "response_format.json_schema.schema",
    "schema_name": "response_format.json_schema.name",
    "tool_message": "messages[0].tool_call_id",
    "user_tool_calls": "messages[0].tool_calls",
    "metadata": "metadata",
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_out_of_range_chat_fields_are_refused_by_name(case: str) -> None:
    with pytest.raises(FieldError) as err:
        check_chat_request(REFUSED[case])
    assert err.value.param == PARAMS[case]


def test_the_widest_valid_chat_request_passes() -> None:
    call = chat_pb2.ToolCall(id="c1", name="lookup", arguments="{}")
    check_chat_request(
        chat(
            messages=[
                chat_pb2.ChatMessage(role="user", content="hi"),
                chat_pb2.ChatMessage(role="assistant", tool_calls=[call]),
                chat_pb2.ChatMessage(role="tool", content="x", tool_call_id="c1"),
            ],
            tools=[TOOL],
            tool_choice=choice(chat_pb2.TOOL_CHOICE_MODE_FUNCTION, "lookup"),
            response_format=chat_pb2.ResponseFormat(
                type=chat_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA, name="s", schema_json="{}"
            ),
            sampling=sampling(
                presence_penalty=2.0,
                frequency_penalty=-2.0,
                logit_bias={0: -100.0, 50256: 100.0},
                logprobs=True,
                top_logprobs=20,
            ),
            metadata={"team": "search"},
        )
    )


def test_tool_choice_none_is_allowed_without_tools() -> None:
    check_chat_request(chat(tool_choice=choice(chat_pb2.TOOL_CHOICE_MODE_NONE)))


@pytest.mark.parametrize(
    ("request_", "param"),
    [
        (scheduler_pb2.CreateCompletionRequest(model="m"), "prompt"),
        (
            scheduler_pb2.CreateCompletionRequest(
                model="m",
                prompt=chat_pb2.CompletionPrompt(prompts=["a"]),
                sampling=sampling(logprobs=True, top_logprobs=6),
            ),
            "logprobs",
        ),
        (
            scheduler_pb2.CreateCompletionRequest(
                model="m",
                prompt=chat_pb2.CompletionPrompt(prompts=["a"] * 5),
                sampling=sampling(n=4),
            ),
            "n",
        ),
    ],
    ids=["no-prompt", "logprobs", "choices"],
)
def test_completion_bounds(request_: scheduler_pb2.CreateCompletionRequest, param: str) -> None:
    with pytest.raises(FieldError) as err:
        check_completion_request(request_)
    assert err.value.param == param


@pytest.mark.parametrize(
    ("inputs", "dimensions", "param"),
    [
        ([], None, "input"),
        ([chat_pb2.EmbeddingInput()], None, "input[0]"),
        ([chat_pb2.EmbeddingInput(text="a", token_ids=[1])], None, "input[0]"),
        ([chat_pb2.EmbeddingInput(text="a")], 0, "dimensions"),
    ],
    ids=["none", "empty", "both", "zero-dimensions"],
)
def test_embedding_bounds(
    inputs: list[chat_pb2.EmbeddingInput], dimensions: int | None, param: str
) -> None:
    request = scheduler_pb2.CreateEmbeddingRequest(model="m", inputs=inputs)
    if dimensions is not None:
        request.dimensions = dimensions
    with pytest.raises(FieldError) as err:
        check_embedding_request(request)
    assert err.value.param == param
