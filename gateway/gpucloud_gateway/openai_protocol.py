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
from gpucloud_gateway.fields import (
    Body,
    Boolean,
    Field,
    Integer,
    Number,
    Object,
    Schema,
    String,
    object_schema,
)
from gpucloud_gateway.validation import INT64_MAX, INT64_MIN, UINT32_MAX, string, type_error

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


class Messages(Field):
    """`messages`: objects of a role, content (a string or text parts) and an optional name."""

    def check(self, value: Any) -> list[chat_pb2.ChatMessage]:
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
            call_id = string(message, "tool_call_id", f"{where}.tool_call_id") or ""
            out.append(
                chat_pb2.ChatMessage(role=role, content=content, name=name, tool_call_id=call_id)
            )
        return out

    def schema(self) -> Schema:
        text_part = object_schema(
            [
                String("type", "The part's type.", required=True, enum=["text"]),
                String("text", "The text.", required=True),
            ]
        )
        message = object_schema(
            [
                String(
                    "role",
                    "Who wrote the message.",
                    required=True,
                    example="user",
                ),
                String("content", "The text, or text parts that are joined."),  # replaced below
                String("name", "An optional name of the participant."),
            ]
        )
        message["properties"]["content"] = {
            "description": "The text, or text parts that are joined; null only for the "
            "assistant's and function's messages.",
            "anyOf": [{"type": "string"}, {"type": "array", "items": text_part}, {"type": "null"}],
        }
        return {
            "type": "array",
            "items": message,
            "description": self.description,
        }


class Stop(Field):
    """`stop`: one sequence or several."""

    absent = ()

    def check(self, value: Any) -> list[str]:
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
            raise type_error("stop", "a string or an array of strings", value)
        return list(value)

    def schema(self) -> Schema:
        return {
            "description": self.description,
            "anyOf": [
                {"type": "string"},
                {"type": "array", "items": {"type": "string"}},
                {"type": "null"},
            ],
        }


# The create-chat-completion body; `model` first, as it is the first thing checked. Unknown
# OpenAI parameters are ignored; the bounds of the values are the core's.
CHAT_REQUEST = Body(
    "CreateChatCompletionRequest",
    "A chat completion request (OpenAI's schema; the fields below are those honoured).",
    [
        String("model", "The model to answer with.", required=True, example="sim-small"),
        Messages("messages", "The conversation so far.", required=True),
        Integer(
            "max_completion_tokens",
            "Most tokens to generate; wins over `max_tokens`.",
            1,
            UINT32_MAX,
        ),
        Integer("max_tokens", "Most tokens to generate (legacy name).", 1, UINT32_MAX),
        Integer("n", "How many choices to generate.", 1, UINT32_MAX, example=1),
        Integer("seed", "Seed for sampling, where the backend supports it.", INT64_MIN, INT64_MAX),
        Stop("stop", "Sequences where generation stops."),
        Boolean("stream", "Stream the answer as server-sent events."),
        Object(
            "stream_options",
            "Options of a streamed answer; only with `stream: true`.",
            [
                Boolean(
                    "include_usage",
                    "Send a last chunk with the usage (and `usage: null` on the others).",
                    param="stream_options.include_usage",
                )
            ],
        ),
        Number("temperature", "Sampling temperature.", example=0.7),
        Number("top_p", "Nucleus sampling probability mass."),
        String("user", "An end-user id, for abuse monitoring."),
        Integer(
            "priority",
            "Extension: the queue priority; may lower, never raise, the key's own.",
            0,
            UINT32_MAX,
        ),
    ],
    example={
        "model": "sim-small",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Write a haiku about GPUs."},
        ],
        "max_tokens": 64,
        "temperature": 0.7,
        "stream": False,
    },
)


def _sampling(values: dict[str, Any]) -> chat_pb2.SamplingParams:
    sampling = chat_pb2.SamplingParams(stop=values["stop"])
    if (temperature := values["temperature"]) is not None:
        sampling.temperature = temperature
    if (top_p := values["top_p"]) is not None:
        sampling.top_p = top_p
    # The contract reads 0 as "the default", so an explicit 0 cannot travel: refused as < 1.
    limit = values["max_completion_tokens"]
    if limit is None:
        limit = values["max_tokens"]
    sampling.max_tokens = limit or 0
    if (seed := values["seed"]) is not None:
        sampling.seed = seed
    sampling.n = values["n"] or 1
    return sampling


def parse_chat_request(raw: bytes) -> ChatParams:
    """Shape-checks a /chat/completions body; unknown OpenAI parameters are ignored."""
    values = CHAT_REQUEST.parse(raw)
    request = scheduler_pb2.CreateChatCompletionRequest(
        model=values["model"] or "",
        messages=values["messages"],
        sampling=_sampling(values),
        user=values["user"] or "",
    )
    if (priority := values["priority"]) is not None:
        request.priority = priority
    stream: bool = values["stream"]
    options = values["stream_options"]
    if options is not None and not stream:
        raise invalid(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            "stream_options",
            "invalid_value",
        )
    request.collect = not stream  # a whole answer travels from the core as one message
    return ChatParams(
        request=request,
        stream=stream,
        include_usage=bool(options and options["include_usage"]),
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
