"""OpenAI chat protocol without I/O: request validation -> proto, and response/chunk rendering.

Shapes follow OpenAI's field order. Validation errors are 400s naming the
offending `param` the way OpenAI does (`messages[0].content`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from gpucloud.v1 import chat_pb2, scheduler_pb2
from gpucloud_gateway.errors import invalid
from gpucloud_gateway.validation import flag, integer, json_object, number, string, type_error

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
MAX_N = 16
MAX_STOP = 4
MAX_TOKENS = 1 << 20
FINISH_REASONS = {
    chat_pb2.FINISH_REASON_STOP: "stop",
    chat_pb2.FINISH_REASON_LENGTH: "length",
}


@dataclass(frozen=True, slots=True)
class ChatParams:
    """A validated chat completion request."""

    request: scheduler_pb2.CreateChatCompletionRequest
    stream: bool
    include_usage: bool
    n: int


def _content(value: object, param: str, role: str) -> str:
    """Message content: a string, or text parts joined; other part types are refused."""
    if isinstance(value, str):
        return value
    if value is None:
        if role in ("assistant", "function"):
            return ""
        raise invalid(f"Missing required parameter: '{param}'.", param, "missing_required")
    if not isinstance(value, list):
        raise type_error(param, "a string or an array", value)
    texts: list[str] = []
    for j, part in enumerate(value):
        where = f"{param}[{j}]"
        if not isinstance(part, dict):
            raise type_error(where, "an object", part)
        if part.get("type") != "text":
            raise invalid(
                f"Invalid '{where}.type': only 'text' content parts are supported.",
                f"{where}.type",
                "unsupported_content",
            )
        text = string(part, "text", f"{where}.text", required=True)
        texts.append(text or "")
    return "".join(texts)


def _messages(body: dict[str, Any]) -> list[chat_pb2.ChatMessage]:
    value = body.get("messages")
    if value is None:
        raise invalid("Missing required parameter: 'messages'.", "messages", "missing_required")
    if not isinstance(value, list):
        raise type_error("messages", "an array", value)
    if not value:
        raise invalid(
            "Invalid 'messages': empty array. Expected an array with minimum length 1.",
            "messages",
            "empty_array",
        )
    out: list[chat_pb2.ChatMessage] = []
    for i, message in enumerate(value):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise type_error(where, "an object", message)
        role = string(message, "role", f"{where}.role", required=True)
        if role not in ROLES:
            raise invalid(
                f"Invalid value for '{where}.role': '{role}'. Supported values are: "
                "'system', 'developer', 'user', 'assistant', 'tool' and 'function'.",
                f"{where}.role",
                "invalid_value",
            )
        content = _content(message.get("content"), f"{where}.content", role)
        name = string(message, "name", f"{where}.name") or ""
        out.append(chat_pb2.ChatMessage(role=role, content=content, name=name))
    return out


def _stop(body: dict[str, Any]) -> list[str]:
    value = body.get("stop")
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise type_error("stop", "a string or an array of strings", value)
    if len(value) > MAX_STOP:
        raise invalid(
            f"Invalid 'stop': array too long. Expected at most {MAX_STOP} items.",
            "stop",
            "array_above_max_length",
        )
    return list(value)


def _stream_options(body: dict[str, Any], stream: bool) -> bool:
    options = body.get("stream_options")
    if options is None:
        return False
    if not isinstance(options, dict):
        raise type_error("stream_options", "an object", options)
    if not stream:
        raise invalid(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            "stream_options",
            "invalid_value",
        )
    return flag(options, "include_usage", "stream_options.include_usage")


def _sampling(body: dict[str, Any]) -> chat_pb2.SamplingParams:
    sampling = chat_pb2.SamplingParams(stop=_stop(body))
    if (temperature := number(body, "temperature", 0.0, 2.0)) is not None:
        sampling.temperature = temperature
    if (top_p := number(body, "top_p", 0.0, 1.0)) is not None:
        sampling.top_p = top_p
    limit = integer(body, "max_completion_tokens", 1, MAX_TOKENS)
    if limit is None:
        limit = integer(body, "max_tokens", 1, MAX_TOKENS)
    sampling.max_tokens = limit or 0
    if (seed := integer(body, "seed", -(1 << 63), (1 << 63) - 1)) is not None:
        sampling.seed = seed
    sampling.n = integer(body, "n", 1, MAX_N) or 1
    return sampling


def parse_chat_request(raw: bytes) -> ChatParams:
    """Validates a /chat/completions body; unknown OpenAI parameters are ignored."""
    body = json_object(raw)
    model = string(body, "model", "model", required=True) or ""
    if not model:
        raise invalid("Invalid 'model': empty string.", "model", "invalid_value")
    request = scheduler_pb2.CreateChatCompletionRequest(
        model=model,
        messages=_messages(body),
        sampling=_sampling(body),
        user=string(body, "user", "user") or "",
    )
    if (priority := integer(body, "priority", 1, 10)) is not None:
        request.priority = priority
    stream = flag(body, "stream", "stream")
    request.collect = not stream  # a whole answer travels from the core as one message
    return ChatParams(
        request=request,
        stream=stream,
        include_usage=_stream_options(body, stream),
        n=request.sampling.n,
    )


def _usage(usage: chat_pb2.Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


def finish_reasons(finished: scheduler_pb2.CompletionFinished) -> dict[int, str]:
    return {c.index: FINISH_REASONS.get(c.reason, "stop") for c in finished.choices}


def completion_body(
    started: scheduler_pb2.TaskStarted,
    texts: list[list[str]],
    finished: scheduler_pb2.CompletionFinished,
) -> bytes:
    """The non-streaming `chat.completion` object."""
    reasons = finish_reasons(finished)
    choices = [
        {
            "index": i,
            "message": {"role": "assistant", "content": "".join(parts)},
            "logprobs": None,
            "finish_reason": reasons.get(i, "stop"),
        }
        for i, parts in enumerate(texts)
    ]
    return orjson.dumps(
        {
            "id": f"chatcmpl-{started.task_id}",
            "object": "chat.completion",
            "created": started.created,
            "model": started.model,
            "choices": choices,
            "usage": _usage(finished.usage),
        }
    )


class ChunkRenderer:
    """Renders `chat.completion.chunk` SSE events of one completion."""

    __slots__ = ("_base", "_include_usage", "_n")

    def __init__(self, started: scheduler_pb2.TaskStarted, n: int, include_usage: bool) -> None:
        self._base = {
            "id": f"chatcmpl-{started.task_id}",
            "object": "chat.completion.chunk",
            "created": started.created,
            "model": started.model,
        }
        self._n = n
        self._include_usage = include_usage

    def _event(self, choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> bytes:
        chunk: dict[str, Any] = {**self._base, "choices": choices}
        if self._include_usage:
            chunk["usage"] = usage
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    def roles(self) -> bytes:
        """The first chunk of each choice: the assistant role and empty content."""
        return b"".join(
            self._event(
                [
                    {
                        "index": i,
                        "delta": {"role": "assistant", "content": ""},
                        "logprobs": None,
                        "finish_reason": None,
                    }
                ]
            )
            for i in range(self._n)
        )

    def delta(self, index: int, text: str) -> bytes:
        return self._event(
            [{"index": index, "delta": {"content": text}, "logprobs": None, "finish_reason": None}]
        )

    def finish(self, finished: scheduler_pb2.CompletionFinished) -> bytes:
        """Finish chunks, the usage chunk when asked for, and `[DONE]`."""
        reasons = finish_reasons(finished)
        out = [
            self._event(
                [
                    {
                        "index": i,
                        "delta": {},
                        "logprobs": None,
                        "finish_reason": reasons.get(i, "stop"),
                    }
                ]
            )
            for i in range(self._n)
        ]
        if self._include_usage:
            out.append(self._event([], _usage(finished.usage)))
        out.append(b"data: [DONE]\n\n")
        return b"".join(out)
