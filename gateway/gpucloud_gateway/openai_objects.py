"""The OpenAI response objects: one TypedDict per object, in OpenAI's field order, one builder each.

Plain dicts typed by TypedDict keep orjson fast on the hot path (no model
validation per chunk) while mypy holds every builder to the shape; the field
order is the API reference's, which is what SDKs and snapshot tests see.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import TYPE_CHECKING, Literal, NotRequired, TypedDict

from gpucloud.v1 import chat_pb2, scheduler_pb2

if TYPE_CHECKING:  # choices -> errors -> this module: only the types, to break the cycle
    from gpucloud_gateway.choices import Answer, ChoiceOutput

FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]
_FINISH_REASONS: dict[int, FinishReason] = {
    chat_pb2.FINISH_REASON_STOP: "stop",
    chat_pb2.FINISH_REASON_LENGTH: "length",
    chat_pb2.FINISH_REASON_TOOL_CALLS: "tool_calls",
    chat_pb2.FINISH_REASON_CONTENT_FILTER: "content_filter",
}


class PromptTokensDetails(TypedDict):
    cached_tokens: int


class CompletionUsage(TypedDict):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    # When the core reports it: the prompt tokens a worker served from its prefix cache.
    prompt_tokens_details: NotRequired[PromptTokensDetails]


class TopLogprob(TypedDict):
    token: str
    logprob: float
    bytes: list[int] | None


class TokenLogprob(TypedDict):
    """The log probability of one output token and of its most likely alternatives."""

    token: str
    logprob: float
    bytes: list[int] | None
    top_logprobs: list[TopLogprob]


class ChoiceLogprobs(TypedDict):
    content: list[TokenLogprob] | None
    refusal: list[TokenLogprob] | None


class FunctionCall(TypedDict):
    name: str
    arguments: str


class ChatCompletionMessageToolCall(TypedDict):
    id: str
    type: Literal["function"]
    function: FunctionCall


class ChatCompletionMessage(TypedDict):
    """The answer; `content` is null when the model only called tools."""

    role: Literal["assistant"]
    content: str | None
    refusal: str | None
    tool_calls: NotRequired[list[ChatCompletionMessageToolCall]]


class ChatCompletionChoice(TypedDict):
    index: int
    message: ChatCompletionMessage
    logprobs: ChoiceLogprobs | None
    finish_reason: FinishReason


class ChatCompletion(TypedDict):
    """`chat.completion`: the answer to a non-streaming request."""

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatCompletionChoice]
    usage: CompletionUsage
    system_fingerprint: str


class ChoiceDeltaFunction(TypedDict, total=False):
    name: str
    arguments: str


class ChoiceDeltaToolCall(TypedDict):
    """A piece of a tool call: the first of an index has its id, type and name; the
    others a fragment of the arguments."""

    index: int
    id: NotRequired[str]
    type: NotRequired[Literal["function"]]
    function: ChoiceDeltaFunction


class ChoiceDelta(TypedDict, total=False):
    role: Literal["assistant"]
    content: str
    tool_calls: list[ChoiceDeltaToolCall]


class ChunkChoice(TypedDict):
    index: int
    delta: ChoiceDelta
    logprobs: ChoiceLogprobs | None
    finish_reason: FinishReason | None


class ChatCompletionChunk(TypedDict):
    """`chat.completion.chunk`: one event of a streamed answer. `usage` is present only
    when the request set `stream_options.include_usage` (null but on the last chunk);
    `obfuscation`, random padding, only with `stream_options.include_obfuscation`."""

    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    system_fingerprint: str
    choices: list[ChunkChoice]
    usage: NotRequired[CompletionUsage | None]
    obfuscation: NotRequired[str]


class ModelCapabilities(TypedDict):
    """Extension (as vLLM adds max_model_len): what the workers serving a model can do."""

    kind: Literal["chat", "embedding"]
    tools: bool
    json_schema: bool
    logprobs: bool
    completions: bool
    max_context_tokens: int | None
    embedding_dimensions: int | None


class Model(TypedDict):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str
    capabilities: ModelCapabilities


class ModelList(TypedDict):
    object: Literal["list"]
    data: list[Model]


class ErrorObject(TypedDict):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(TypedDict):
    """The error envelope of every failed request (and of a stream's last event)."""

    error: ErrorObject


def completion_usage(usage: chat_pb2.Usage) -> CompletionUsage:
    rendered: CompletionUsage = {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }
    if usage.HasField("prompt_tokens_details"):
        cached = usage.prompt_tokens_details.cached_tokens
        rendered["prompt_tokens_details"] = {"cached_tokens": cached}
    return rendered


def finish_reasons(finished: scheduler_pb2.CompletionFinished) -> dict[int, FinishReason]:
    return {c.index: _FINISH_REASONS.get(c.reason, "stop") for c in finished.choices}


def fingerprint(started: scheduler_pb2.TaskStarted) -> str:
    """`system_fingerprint`: one value per worker and model, so that a different backend
    configuration reads as a different fingerprint (what OpenAI's means); it names neither."""
    served = f"{started.worker_id}\0{started.model}".encode()
    return "gpucloud-" + hashlib.blake2b(served, digest_size=6).hexdigest()


def token_logprobs(entries: Iterable[chat_pb2.TokenLogprob]) -> list[TokenLogprob]:
    return [
        {
            "token": e.token,
            "logprob": e.logprob,
            "bytes": list(e.token.encode()),
            "top_logprobs": [
                {"token": t.token, "logprob": t.logprob, "bytes": list(t.token.encode())}
                for t in e.top_logprobs
            ],
        }
        for e in entries
    ]


def choice_logprobs(entries: Iterable[chat_pb2.TokenLogprob]) -> ChoiceLogprobs:
    return {"content": token_logprobs(entries), "refusal": None}


def assistant_message(choice: ChoiceOutput) -> ChatCompletionMessage:
    content, calls = choice.content, choice.tool_calls()
    message: ChatCompletionMessage = {
        "role": "assistant",
        "content": content if content or not calls else None,
        "refusal": None,
    }
    if calls:
        message["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": "".join(call.arguments)},
            }
            for call in calls
        ]
    return message


def chat_completion(answer: Answer, logprobs: bool) -> ChatCompletion:
    """The whole answer; each choice has `logprobs` when the request asked for them."""
    reasons = finish_reasons(answer.finished)
    started = answer.started
    return {
        "id": completion_id(started),
        "object": "chat.completion",
        "created": started.created,
        "model": started.model,
        "choices": [
            {
                "index": i,
                "message": assistant_message(choice),
                "logprobs": choice_logprobs(choice.logprobs) if logprobs else None,
                "finish_reason": reasons.get(i, "stop"),
            }
            for i, choice in enumerate(answer.choices)
        ],
        "usage": completion_usage(answer.finished.usage),
        "system_fingerprint": fingerprint(started),
    }


def tool_call_piece(piece: chat_pb2.ToolCallDelta) -> ChoiceDeltaToolCall:
    if piece.id:
        function: ChoiceDeltaFunction = {"name": piece.name, "arguments": piece.arguments}
        return {"index": piece.index, "id": piece.id, "type": "function", "function": function}
    return {"index": piece.index, "function": {"arguments": piece.arguments}}


def choice_delta(delta: scheduler_pb2.ContentDelta) -> ChoiceDelta:
    """A delta that may hold tool-call pieces; plain text takes a shorter path."""
    out: ChoiceDelta = {}
    if delta.text or not delta.tool_calls:
        out["content"] = delta.text
    if delta.tool_calls:
        out["tool_calls"] = [tool_call_piece(p) for p in delta.tool_calls]
    return out


def chunk_choice(
    index: int,
    delta: ChoiceDelta,
    finish: FinishReason | None,
    logprobs: ChoiceLogprobs | None = None,
) -> ChunkChoice:
    return {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}


def completion_id(started: scheduler_pb2.TaskStarted) -> str:
    return f"chatcmpl-{started.task_id}"


def chat_completion_chunk(
    id: str,
    created: int,
    model: str,
    fingerprint: str,
    choices: list[ChunkChoice],
    with_usage: bool,
    usage: CompletionUsage | None = None,
) -> ChatCompletionChunk:
    """Takes the stream's constants unpacked and positional: this runs once per token."""
    chunk: ChatCompletionChunk = {
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": fingerprint,
        "choices": choices,
    }
    if with_usage:
        chunk["usage"] = usage
    return chunk


def model(entry: scheduler_pb2.ModelEntry) -> Model:
    c = entry.capabilities
    return {
        "id": entry.id,
        "object": "model",
        "created": entry.created,
        "owned_by": entry.owned_by,
        "capabilities": {
            "kind": "embedding" if c.embeddings else "chat",
            "tools": c.tools,
            "json_schema": c.json_schema,
            "logprobs": c.logprobs,
            "completions": c.completions,
            "max_context_tokens": c.max_context_tokens or None,
            "embedding_dimensions": c.embedding_dimensions or None,
        },
    }


def model_list(models: list[Model]) -> ModelList:
    return {"object": "list", "data": models}


def error_envelope(message: str, type: str, param: str | None, code: str | None) -> ErrorResponse:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}
