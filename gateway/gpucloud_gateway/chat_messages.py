"""A chat request's `messages`: OpenAI's message objects as the contract's ChatMessage.

Content is a string or parts. Text parts are joined into `content`; refusal parts
(an assistant's) into `refusal`; image, audio and file parts travel, with the text
parts, in `parts`, and the core refuses them unless a worker serving the model
declares that kind of input. Assistant tool calls and a tool message's
`tool_call_id` travel as they are.
"""

from __future__ import annotations

from typing import Any

from gpucloud.v1 import chat_pb2
from gpucloud_gateway.fields import Field, Items, Object, Refused, Schema, String, Tagged
from gpucloud_gateway.validation import missing, type_error

# Roles whose messages may leave out `content` (an assistant's tool calls, a function's void).
_CONTENT_OPTIONAL = frozenset({"assistant", "function"})
_AT = "messages[]"
Part = tuple[str, dict[str, Any]]


def _members(at: str, *fields: tuple[str, str, bool]) -> list[Field]:
    return [String(name, text, required=need, param=f"{at}.{name}") for name, text, need in fields]


def _part_variants(at: str) -> dict[str, list[Field]]:
    def nested(name: str, description: str, *fields: tuple[str, str, bool]) -> Field:
        where = f"{at}.{name}"
        return Object(name, description, _members(where, *fields), required=True, param=where)

    return {
        "text": _members(at, ("text", "The text.", True)),
        "image_url": [
            nested(
                "image_url",
                "An image.",
                ("url", "An http(s) or data: URL.", True),
                ("detail", "`auto`, `low` or `high`.", False),
            )
        ],
        "input_audio": [
            nested(
                "input_audio",
                "Audio.",
                ("data", "Base64-encoded audio.", True),
                ("format", "`wav` or `mp3`.", True),
            )
        ],
        "file": [
            nested(
                "file",
                "A file.",
                ("file_id", "The id of an uploaded file.", False),
                ("filename", "The file's name.", False),
                ("file_data", "The base64-encoded file.", False),
            )
        ],
        "refusal": _members(at, ("refusal", "An assistant's refusal.", True)),
    }


class Content(Field):
    """A message's `content`: a string, or an array of parts."""

    plain = frozenset({str})

    def __init__(self, name: str, description: str, **kw: Any) -> None:
        super().__init__(name, description, **kw)
        at = f"{self.param}[]"
        part = Tagged("content", "A part.", _part_variants(at), required=True, param=at)
        self._parts = Items(name, "Parts.", part, required=True, param=self.param)

    def check(self, value: Any) -> str | list[Part]:
        if isinstance(value, str):
            return value
        if isinstance(value, list):
            parts: list[Part] = self._parts.check(value)
            return parts
        raise type_error(self.param, "a string or an array", value)

    def schema(self) -> Schema:
        return {
            "description": self.description,
            "anyOf": [{"type": "string"}, self._parts.schema(), {"type": "null"}],
        }


def _media(kind: str, values: dict[str, Any]) -> chat_pb2.ContentPart:
    inner = values[kind]
    if kind == "image_url":
        image = chat_pb2.ImageUrl(url=inner["url"], detail=inner["detail"] or "")
        return chat_pb2.ContentPart(image_url=image)
    if kind == "input_audio":
        audio = chat_pb2.InputAudio(data=inner["data"], format=inner["format"])
        return chat_pb2.ContentPart(input_audio=audio)
    file = chat_pb2.FileInput(
        file_id=inner["file_id"] or "",
        filename=inner["filename"] or "",
        file_data=inner["file_data"] or "",
    )
    return chat_pb2.ContentPart(file=file)


def _add_parts(message: chat_pb2.ChatMessage, parts: list[Part]) -> None:
    texts: list[str] = []
    media = False
    for kind, values in parts:
        if kind == "text":
            texts.append(values["text"])
            message.parts.add(text=values["text"])
        elif kind == "refusal":
            message.refusal += values["refusal"]
        else:
            media = True
            message.parts.append(_media(kind, values))
    message.content = "".join(texts)
    if not media:  # `parts` is for content the text alone does not tell
        del message.parts[:]


def _message(values: dict[str, Any]) -> chat_pb2.ChatMessage:
    role: str = values["role"]
    content = values["content"]
    if isinstance(content, str):  # the common message: a role and text
        message = chat_pb2.ChatMessage(role=role, content=content, name=values["name"] or "")
    else:
        message = chat_pb2.ChatMessage(role=role, name=values["name"] or "")
        if content is not None:
            _add_parts(message, content)
        elif role not in _CONTENT_OPTIONAL:
            raise missing(f"{_AT}.content")
    if calls := values["tool_calls"]:
        message.tool_calls.extend(calls)
    if call_id := values["tool_call_id"]:
        message.tool_call_id = call_id
    if refusal := values["refusal"]:
        message.refusal += refusal
    return message


def _tool_call(_: str, values: dict[str, Any]) -> chat_pb2.ToolCall:
    function = values["function"]
    return chat_pb2.ToolCall(
        id=values["id"], name=function["name"], arguments=function["arguments"]
    )


_TOOL_CALL = Tagged(
    "tool_calls",
    "A function call.",
    {
        "function": [
            String("id", "The call's id.", required=True, param=f"{_AT}.tool_calls[].id"),
            Object(
                "function",
                "The function called.",
                _members(
                    f"{_AT}.tool_calls[].function",
                    ("name", "The function's name.", True),
                    ("arguments", "The arguments: a JSON object, as text.", True),
                ),
                required=True,
                param=f"{_AT}.tool_calls[].function",
            ),
        ]
    },
    required=True,
    param=f"{_AT}.tool_calls[]",
    into=_tool_call,
)
_MESSAGE = Object(
    "messages",
    "A message.",
    [
        String(
            "role", "Who wrote the message.", required=True, param=f"{_AT}.role", example="user"
        ),
        Content(
            "content",
            "The text, or parts; null only for an assistant's and a function's messages.",
            param=f"{_AT}.content",
        ),
        String("name", "An optional name of the participant.", param=f"{_AT}.name"),
        Items(
            "tool_calls",
            "An assistant's function calls.",
            _TOOL_CALL,
            param=f"{_AT}.tool_calls",
        ),
        String("tool_call_id", "A tool message: the call it answers.", param=f"{_AT}.tool_call_id"),
        String("refusal", "An assistant's refusal.", param=f"{_AT}.refusal"),
        Refused(
            "function_call",
            "An assistant's legacy function call.",
            "deprecated; send 'tool_calls'",
            param=f"{_AT}.function_call",
        ),
        Refused(
            "audio",
            "An assistant's earlier audio answer.",
            "gpucloud answers with text only",
            param=f"{_AT}.audio",
        ),
    ],
    required=True,
    param=_AT,
    into=_message,
)
MESSAGES = Items("messages", "The conversation so far.", _MESSAGE, required=True)
