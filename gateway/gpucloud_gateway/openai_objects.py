"""The OpenAI response objects: one TypedDict per object, in OpenAI's field order, one builder each.

Plain dicts typed by TypedDict keep orjson fast on the hot path (no model
validation per chunk) while mypy holds every builder to the shape; the field
order is the API reference's, which is what SDKs and snapshot tests see.
"""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict

from gpucloud.v1 import chat_pb2, scheduler_pb2

FinishReason = Literal["stop", "length"]
_FINISH_REASONS: dict[int, FinishReason] = {
    chat_pb2.FINISH_REASON_STOP: "stop",
    chat_pb2.FINISH_REASON_LENGTH: "length",
}


class PromptTokensDetails(TypedDict):
    cached_tokens: int


class CompletionUsage(TypedDict):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    # When the core reports it: the prompt tokens a worker served from its prefix cache.
    prompt_tokens_details: NotRequired[PromptTokensDetails]


class ChatCompletionMessage(TypedDict):
    role: Literal["assistant"]
    content: str


class ChatCompletionChoice(TypedDict):
    index: int
    message: ChatCompletionMessage
    logprobs: None
    finish_reason: FinishReason


class ChatCompletion(TypedDict):
    """`chat.completion`: the answer to a non-streaming request."""

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatCompletionChoice]
    usage: CompletionUsage


class ChoiceDelta(TypedDict, total=False):
    role: Literal["assistant"]
    content: str


class ChunkChoice(TypedDict):
    index: int
    delta: ChoiceDelta
    logprobs: None
    finish_reason: FinishReason | None


class ChatCompletionChunk(TypedDict):
    """`chat.completion.chunk`: one event of a streamed answer. `usage` is present only
    when the request set `stream_options.include_usage` (null but on the last chunk)."""

    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: NotRequired[CompletionUsage | None]


class Model(TypedDict):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


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


def chat_completion(
    started: scheduler_pb2.TaskStarted,
    texts: list[list[str]],
    finished: scheduler_pb2.CompletionFinished,
) -> ChatCompletion:
    reasons = finish_reasons(finished)
    return {
        "id": completion_id(started),
        "object": "chat.completion",
        "created": started.created,
        "model": started.model,
        "choices": [
            {
                "index": i,
                "message": {"role": "assistant", "content": "".join(parts)},
                "logprobs": None,
                "finish_reason": reasons.get(i, "stop"),
            }
            for i, parts in enumerate(texts)
        ],
        "usage": completion_usage(finished.usage),
    }


def chunk_choice(index: int, delta: ChoiceDelta, finish: FinishReason | None) -> ChunkChoice:
    return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}


def completion_id(started: scheduler_pb2.TaskStarted) -> str:
    return f"chatcmpl-{started.task_id}"


def chat_completion_chunk(
    id: str,
    created: int,
    model: str,
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
        "choices": choices,
    }
    if with_usage:
        chunk["usage"] = usage
    return chunk


def model(entry: scheduler_pb2.ModelEntry) -> Model:
    return {"id": entry.id, "object": "model", "created": entry.created, "owned_by": entry.owned_by}


def model_list(models: list[Model]) -> ModelList:
    return {"object": "list", "data": models}


def error_envelope(message: str, type: str, param: str | None, code: str | None) -> ErrorResponse:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}
