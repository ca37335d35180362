"""OpenAI chat protocol without I/O: request shape -> proto, and response/chunk rendering.

The gateway checks the JSON's shape only (types, required fields, values the
contract can carry); every rule on the values (roles, bounds, lengths) is the
core's (gpucloud_server/servicers/validation.py), which answers INVALID_ARGUMENT
naming the `param` the way OpenAI does (`messages[0].role`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from gpucloud.v1 import chat_pb2, scheduler_pb2
from gpucloud_gateway import openai_objects as objects
from gpucloud_gateway.errors import invalid
from gpucloud_gateway.validation import (
    INT64_MAX,
    INT64_MIN,
    UINT32_MAX,
    decimal,
    flag,
    integer,
    json_object,
    string,
    type_error,
)

# Roles whose messages may leave out `content` (an assistant's tool calls, a function's void).
_CONTENT_OPTIONAL = frozenset({"assistant", "function"})


@dataclass(frozen=True, slots=True)
class ChatParams:
    """A chat completion request of the right shape."""

    request: scheduler_pb2.CreateChatCompletionRequest
    stream: bool
    include_usage: bool
    n: int


def _content(value: object, param: str, role: str) -> str:
    """Message content: a string, or text parts joined; other part types are refused."""
    if isinstance(value, str):
        return value
    if value is None:
        if role in _CONTENT_OPTIONAL:
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
    out: list[chat_pb2.ChatMessage] = []
    for i, message in enumerate(value):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise type_error(where, "an object", message)
        role = string(message, "role", f"{where}.role", required=True) or ""
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
    if (temperature := decimal(body, "temperature")) is not None:
        sampling.temperature = temperature
    if (top_p := decimal(body, "top_p")) is not None:
        sampling.top_p = top_p
    # The contract reads 0 as "the default", so an explicit 0 cannot travel: refuse it here.
    limit = integer(body, "max_completion_tokens", 1, UINT32_MAX)
    if limit is None:
        limit = integer(body, "max_tokens", 1, UINT32_MAX)
    sampling.max_tokens = limit or 0
    if (seed := integer(body, "seed", INT64_MIN, INT64_MAX)) is not None:
        sampling.seed = seed
    sampling.n = integer(body, "n", 1, UINT32_MAX) or 1
    return sampling


def parse_chat_request(raw: bytes) -> ChatParams:
    """Shape-checks a /chat/completions body; unknown OpenAI parameters are ignored."""
    body = json_object(raw)
    request = scheduler_pb2.CreateChatCompletionRequest(
        model=string(body, "model", "model", required=True) or "",
        messages=_messages(body),
        sampling=_sampling(body),
        user=string(body, "user", "user") or "",
    )
    if (priority := integer(body, "priority", 0, UINT32_MAX)) is not None:
        request.priority = priority
    stream = flag(body, "stream", "stream")
    request.collect = not stream  # a whole answer travels from the core as one message
    return ChatParams(
        request=request,
        stream=stream,
        include_usage=_stream_options(body, stream),
        n=request.sampling.n,
    )


def completion_body(
    started: scheduler_pb2.TaskStarted,
    texts: list[list[str]],
    finished: scheduler_pb2.CompletionFinished,
) -> bytes:
    """The non-streaming `chat.completion` object, serialised."""
    return orjson.dumps(objects.chat_completion(started, texts, finished))


class ChunkRenderer:
    """Renders the `chat.completion.chunk` SSE events of one completion."""

    __slots__ = ("_created", "_id", "_include_usage", "_model", "_n")

    def __init__(self, started: scheduler_pb2.TaskStarted, n: int, include_usage: bool) -> None:
        self._id = objects.completion_id(started)
        self._created = started.created
        self._model = started.model
        self._n = n
        self._include_usage = include_usage

    def _event(
        self, choices: list[objects.ChunkChoice], usage: objects.CompletionUsage | None = None
    ) -> bytes:
        chunk = objects.chat_completion_chunk(
            self._id, self._created, self._model, choices, self._include_usage, usage
        )
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    def roles(self) -> bytes:
        """The first chunk of each choice: the assistant role and empty content."""
        return b"".join(
            self._event([objects.chunk_choice(i, {"role": "assistant", "content": ""}, None)])
            for i in range(self._n)
        )

    def delta(self, index: int, text: str) -> bytes:
        """One token's chunk: the hot path, so it skips `_event`'s frame."""
        chunk = objects.chat_completion_chunk(
            self._id,
            self._created,
            self._model,
            [objects.chunk_choice(index, {"content": text}, None)],
            self._include_usage,
        )
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    def finish(self, finished: scheduler_pb2.CompletionFinished) -> bytes:
        """Finish chunks, the usage chunk when asked for, and `[DONE]`."""
        reasons = objects.finish_reasons(finished)
        out = [
            self._event([objects.chunk_choice(i, {}, reasons.get(i, "stop"))])
            for i in range(self._n)
        ]
        if self._include_usage:
            out.append(self._event([], objects.completion_usage(finished.usage)))
        out.append(b"data: [DONE]\n\n")
        return b"".join(out)
