"""The Responses API objects: the Response, its output items and its stream events, as TypedDicts.

Field order is OpenAI's (what SDKs and snapshot tests see). A Response echoes
the request's settings beside its output: `RequestEcho` holds them, taken once
from the request and written into every Response of its stream.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, NotRequired, TypedDict

from gpucloud.v1 import chat_pb2

ItemStatus = Literal["in_progress", "completed", "incomplete"]
Status = Literal["queued", "in_progress", "completed", "incomplete", "failed"]
IncompleteReason = Literal["max_output_tokens", "content_filter"]
ErrorCode = Literal["server_error", "rate_limit_exceeded", "invalid_prompt"]


class JsonObject(TypedDict):
    """Any JSON object (a JSON Schema, as the request gave it)."""


class TopLogprob(TypedDict):
    token: str
    bytes: list[int]
    logprob: float


class Logprob(TypedDict):
    token: str
    bytes: list[int]
    logprob: float
    top_logprobs: list[TopLogprob]


class OutputText(TypedDict):
    type: Literal["output_text"]
    text: str
    annotations: list[JsonObject]
    logprobs: list[Logprob]


class OutputMessage(TypedDict):
    """The assistant's text: one `output_text` part."""

    id: str
    type: Literal["message"]
    status: ItemStatus
    content: list[OutputText]
    role: Literal["assistant"]


class FunctionCall(TypedDict):
    """A call of one of the request's function tools; `call_id` is what the
    `function_call_output` item answering it names."""

    id: str
    type: Literal["function_call"]
    status: ItemStatus
    arguments: str
    call_id: str
    name: str


OutputItem = OutputMessage | FunctionCall


class FunctionTool(TypedDict):
    type: Literal["function"]
    name: str
    description: str | None
    parameters: JsonObject | None
    strict: bool | None


class ToolChoiceFunction(TypedDict):
    type: Literal["function"]
    name: str


ToolChoice = Literal["none", "auto", "required"] | ToolChoiceFunction


class TextFormatPlain(TypedDict):
    type: Literal["text", "json_object"]


class TextFormatJsonSchema(TypedDict):
    type: Literal["json_schema"]
    name: str
    schema: JsonObject
    description: NotRequired[str]
    strict: bool | None


class TextConfig(TypedDict):
    format: TextFormatPlain | TextFormatJsonSchema


class Reasoning(TypedDict):
    """Always empty: no model here reasons in separate items."""

    effort: None
    summary: None


class InputTokensDetails(TypedDict):
    cached_tokens: int
    cache_write_tokens: int


class OutputTokensDetails(TypedDict):
    reasoning_tokens: int


class ResponseUsage(TypedDict):
    input_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens: int
    output_tokens_details: OutputTokensDetails
    total_tokens: int


class ResponseError(TypedDict):
    code: ErrorCode
    message: str
    type: str
    param: str | None


class IncompleteDetails(TypedDict):
    reason: IncompleteReason


class RequestEcho(TypedDict):
    """The request's settings a Response repeats, with the defaults filled in."""

    instructions: str | None
    max_output_tokens: int | None
    parallel_tool_calls: bool
    temperature: float | None
    text: TextConfig
    tool_choice: ToolChoice
    tools: list[FunctionTool]
    top_logprobs: int | None
    top_p: float | None
    user: str | None
    metadata: dict[str, str]


class Response(TypedDict):
    """A model response. Never stored, whatever the request's `store` says: it cannot be
    retrieved later nor continued with `previous_response_id`."""

    id: str
    object: Literal["response"]
    created_at: int
    status: Status
    background: Literal[False]
    completed_at: int | None
    error: ResponseError | None
    incomplete_details: IncompleteDetails | None
    instructions: str | None
    max_output_tokens: int | None
    model: str
    output: list[OutputItem]
    parallel_tool_calls: bool
    previous_response_id: None
    reasoning: Reasoning
    temperature: float | None
    text: TextConfig
    tool_choice: ToolChoice
    tools: list[FunctionTool]
    top_logprobs: int | None
    top_p: float | None
    truncation: Literal["disabled"]
    usage: ResponseUsage | None
    user: str | None
    metadata: dict[str, str]


class ResponseEvent(TypedDict):
    """`response.created`, `.queued`, `.in_progress`, then one of `.completed`,
    `.incomplete` (the output was cut short) or `.failed`: the whole Response so far."""

    type: Literal[
        "response.created",
        "response.queued",
        "response.in_progress",
        "response.completed",
        "response.incomplete",
        "response.failed",
    ]
    sequence_number: int
    response: Response


class OutputItemEvent(TypedDict):
    type: Literal["response.output_item.added", "response.output_item.done"]
    sequence_number: int
    output_index: int
    item: OutputItem


class ContentPartEvent(TypedDict):
    type: Literal["response.content_part.added", "response.content_part.done"]
    sequence_number: int
    item_id: str
    output_index: int
    content_index: int
    part: OutputText


class DeltaTopLogprob(TypedDict):
    token: str
    logprob: float


class DeltaLogprob(TypedDict):
    token: str
    logprob: float
    top_logprobs: list[DeltaTopLogprob]


class OutputTextDeltaEvent(TypedDict):
    type: Literal["response.output_text.delta"]
    sequence_number: int
    item_id: str
    output_index: int
    content_index: int
    delta: str
    logprobs: list[DeltaLogprob]
    # With stream_options.include_obfuscation: random padding, so sizes do not tell the text.
    obfuscation: NotRequired[str]


class OutputTextDoneEvent(TypedDict):
    type: Literal["response.output_text.done"]
    sequence_number: int
    item_id: str
    output_index: int
    content_index: int
    text: str
    logprobs: list[DeltaLogprob]


class ArgumentsDeltaEvent(TypedDict):
    type: Literal["response.function_call_arguments.delta"]
    sequence_number: int
    item_id: str
    output_index: int
    delta: str
    obfuscation: NotRequired[str]


class ArgumentsDoneEvent(TypedDict):
    type: Literal["response.function_call_arguments.done"]
    sequence_number: int
    item_id: str
    output_index: int
    arguments: str


def usage(value: chat_pb2.Usage) -> ResponseUsage:
    return {
        "input_tokens": value.prompt_tokens,
        # The core reports prefix-cache hits, not what a request wrote to the cache.
        "input_tokens_details": {
            "cached_tokens": value.prompt_tokens_details.cached_tokens,
            "cache_write_tokens": 0,
        },
        "output_tokens": value.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": value.total_tokens,
    }


def response(
    id: str,
    created_at: int,
    model: str,
    echo: RequestEcho,
    status: Status,
    output: list[OutputItem],
) -> Response:
    """A Response without its end: no usage, error or completion time yet."""
    return {
        "id": id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": False,
        "completed_at": None,
        "error": None,
        "incomplete_details": None,
        "instructions": echo["instructions"],
        "max_output_tokens": echo["max_output_tokens"],
        "model": model,
        "output": output,
        "parallel_tool_calls": echo["parallel_tool_calls"],
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "temperature": echo["temperature"],
        "text": echo["text"],
        "tool_choice": echo["tool_choice"],
        "tools": echo["tools"],
        "top_logprobs": echo["top_logprobs"],
        "top_p": echo["top_p"],
        "truncation": "disabled",
        "usage": None,
        "user": echo["user"],
        "metadata": echo["metadata"],
    }


def logprobs(tokens: Iterable[chat_pb2.TokenLogprob]) -> list[Logprob]:
    """An output_text part's logprobs: each token with its UTF-8 bytes."""
    return [
        {
            "token": t.token,
            "bytes": list(t.token.encode()),
            "logprob": t.logprob,
            "top_logprobs": [
                {"token": a.token, "bytes": list(a.token.encode()), "logprob": a.logprob}
                for a in t.top_logprobs
            ],
        }
        for t in tokens
    ]


def delta_logprobs(tokens: Iterable[chat_pb2.TokenLogprob]) -> list[DeltaLogprob]:
    """A text delta event's logprobs: tokens without their bytes."""
    return [
        {
            "token": t.token,
            "logprob": t.logprob,
            "top_logprobs": [{"token": a.token, "logprob": a.logprob} for a in t.top_logprobs],
        }
        for t in tokens
    ]
