"""The Responses API's `input` as the contract's chat messages, remembering where each came from.

Input items map onto chat messages: a message item is a message, `function_call`
items are the tool calls of an assistant message (consecutive calls, or calls
right after an assistant's text, join one message), a `function_call_output` is a
`tool` message. The core names a refused field by its chat name
(`messages[2].tool_calls[0].id`); `Conversation.param` turns that back into the
input item the client wrote (`input[3].call_id`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gpucloud.v1 import chat_pb2
from gpucloud_gateway.errors import invalid
from gpucloud_gateway.fields import Field, Schema, String, object_schema
from gpucloud_gateway.validation import missing, string, type_error

_ROLES = ("user", "system", "developer", "assistant")
_TEXT_PARTS = frozenset({"input_text", "output_text"})


@dataclass(slots=True)
class Conversation:
    """Chat messages and, per message, its params' origins: a suffix of the message's chat
    param ("" for the whole, ".role", ".tool_calls[0].id") -> the Responses param."""

    messages: list[chat_pb2.ChatMessage] = field(default_factory=list)
    origins: list[dict[str, str]] = field(default_factory=list)

    def add(self, message: chat_pb2.ChatMessage, origins: dict[str, str]) -> None:
        self.messages.append(message)
        self.origins.append(origins)

    def prepend(self, message: chat_pb2.ChatMessage, origin: str) -> None:
        self.messages.insert(0, message)
        self.origins.insert(0, {"": origin})

    def param(self, index: int, suffix: str) -> str:
        """The Responses param of `messages[index]` + `suffix`: the longest known prefix's."""
        origins = self.origins[index] if index < len(self.origins) else {"": "input"}
        while suffix and suffix not in origins:
            suffix = suffix[: max(suffix.rfind("."), suffix.rfind("["), 0)]
        return origins[suffix]


class Input(Field):
    """`input`: text, or input items (messages, function calls and their outputs)."""

    def check(self, value: Any) -> Conversation:
        return conversation(value)

    def schema(self) -> Schema:
        part = {"type": "object", "properties": {"type": {"type": "string"}}, "required": ["type"]}
        item = object_schema(
            [
                String(
                    "type",
                    "The item's kind; absent means a message.",
                    enum=["message", "function_call", "function_call_output"],
                ),
                String("role", "A message's author.", enum=_ROLES),
                String("call_id", "A function call's id, which its output names."),
                String("name", "A function call's function."),
                String("arguments", "A function call's arguments, JSON text."),
            ]
        )
        text_or_parts = {"anyOf": [{"type": "string"}, {"type": "array", "items": part}]}
        item["properties"]["content"] = {
            **text_or_parts,
            "description": "A message's text, or content parts: input_text, output_text, "
            "refusal, input_image (by URL), input_file (by data or id), input_audio.",
        }
        item["properties"]["output"] = {**text_or_parts, "description": "A function's output."}
        return {
            "description": self.description,
            "anyOf": [{"type": "string"}, {"type": "array", "items": item}],
        }


def conversation(value: Any) -> Conversation:
    """`input`: a string (one user message) or an array of input items."""
    out = Conversation()
    if isinstance(value, str):
        out.add(chat_pb2.ChatMessage(role="user", content=value), {"": "input"})
        return out
    if not isinstance(value, list):
        raise type_error("input", "a string or an array", value)
    for i, item in enumerate(value):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise type_error(where, "an object", item)
        kind = item.get("type", "message")
        if kind == "message":
            _message(out, item, where)
        elif kind == "function_call":
            _function_call(out, item, where)
        elif kind == "function_call_output":
            _function_output(out, item, where)
        else:
            raise invalid(
                f"Invalid '{where}.type': only 'message', 'function_call' and "
                f"'function_call_output' input items are supported, not {str(kind)[:64]!r}.",
                f"{where}.type",
                "unsupported_value",
            )
    return out


def _required(item: dict[str, Any], name: str, param: str) -> str:
    return string(item, name, param, required=True) or ""


def _message(out: Conversation, item: dict[str, Any], where: str) -> None:
    role = _required(item, "role", f"{where}.role")
    if role not in _ROLES:
        raise invalid(
            f"Invalid '{where}.role': expected 'user', 'system', 'developer' or 'assistant'.",
            f"{where}.role",
            "invalid_value",
        )
    message = chat_pb2.ChatMessage(role=role)
    origins = {"": where, ".role": f"{where}.role", ".content": f"{where}.content"}
    _content(message, item.get("content"), f"{where}.content", origins, ".content")
    out.add(message, origins)


def _function_call(out: Conversation, item: dict[str, Any], where: str) -> None:
    call = chat_pb2.ToolCall(
        id=_required(item, "call_id", f"{where}.call_id"),
        name=_required(item, "name", f"{where}.name"),
        arguments=_required(item, "arguments", f"{where}.arguments"),
    )
    if out.messages and out.messages[-1].role == "assistant":
        message, origins = out.messages[-1], out.origins[-1]
    else:
        message, origins = chat_pb2.ChatMessage(role="assistant"), {"": where}
        out.add(message, origins)
    at = f".tool_calls[{len(message.tool_calls)}]"
    origins[at] = where
    origins[f"{at}.id"] = f"{where}.call_id"
    origins[f"{at}.function.name"] = f"{where}.name"
    origins[f"{at}.function.arguments"] = f"{where}.arguments"
    message.tool_calls.append(call)


def _function_output(out: Conversation, item: dict[str, Any], where: str) -> None:
    call_id = _required(item, "call_id", f"{where}.call_id")
    message = chat_pb2.ChatMessage(role="tool", tool_call_id=call_id)
    origins = {"": where, ".tool_call_id": f"{where}.call_id", ".content": f"{where}.output"}
    _content(message, item.get("output"), f"{where}.output", origins, ".content")
    out.add(message, origins)


def _content(
    message: chat_pb2.ChatMessage,
    value: Any,
    param: str,
    origins: dict[str, str],
    suffix: str,
) -> None:
    """A message's content: a string, or parts (text joined; other parts kept in order)."""
    if isinstance(value, str):
        message.content = value
        return
    if value is None:
        raise missing(param)
    if not isinstance(value, list):
        raise type_error(param, "a string or an array", value)
    parts: list[chat_pb2.ContentPart] = []
    texts: list[str] = []
    for j, raw in enumerate(value):
        where = f"{param}[{j}]"
        if not isinstance(raw, dict):
            raise type_error(where, "an object", raw)
        kind = raw.get("type")
        if kind == "refusal":
            message.refusal += _required(raw, "refusal", f"{where}.refusal")
            continue
        origins[f"{suffix}[{len(parts)}]"] = where
        if kind in _TEXT_PARTS:
            text = _required(raw, "text", f"{where}.text")
            texts.append(text)
            parts.append(chat_pb2.ContentPart(text=text))
        else:
            parts.append(_media(raw, kind, where))
    message.content = "".join(texts)
    if any(p.WhichOneof("part") != "text" for p in parts):
        message.parts.extend(parts)


def _media(part: dict[str, Any], kind: Any, where: str) -> chat_pb2.ContentPart:
    """An image, file or audio part; one that only names an uploaded object by an id or a
    URL the contract cannot carry is refused (there is no Files API here)."""
    if kind == "input_image":
        if part.get("image_url") is None and part.get("file_id") is not None:
            raise invalid(
                f"Invalid '{where}.file_id': images by file id are not supported; "
                "send 'image_url' (a URL or a data: URL).",
                f"{where}.file_id",
                "unsupported_value",
            )
        url = _required(part, "image_url", f"{where}.image_url")
        detail = string(part, "detail", f"{where}.detail")
        return chat_pb2.ContentPart(image_url=chat_pb2.ImageUrl(url=url, detail=detail or ""))
    if kind == "input_file":
        if part.get("file_url") is not None:
            raise invalid(
                f"Invalid '{where}.file_url': files by URL are not supported; "
                "send 'file_data' or 'file_id'.",
                f"{where}.file_url",
                "unsupported_value",
            )
        file = chat_pb2.FileInput(
            file_id=string(part, "file_id", f"{where}.file_id") or "",
            filename=string(part, "filename", f"{where}.filename") or "",
            file_data=string(part, "file_data", f"{where}.file_data") or "",
        )
        return chat_pb2.ContentPart(file=file)
    if kind == "input_audio":
        audio = part.get("input_audio")
        if not isinstance(audio, dict):
            raise type_error(f"{where}.input_audio", "an object", audio)
        data = _required(audio, "data", f"{where}.input_audio.data")
        fmt = _required(audio, "format", f"{where}.input_audio.format")
        return chat_pb2.ContentPart(input_audio=chat_pb2.InputAudio(data=data, format=fmt))
    raise invalid(
        f"Invalid '{where}.type': expected a content part of type 'input_text', "
        "'output_text', 'refusal', 'input_image', 'input_file' or 'input_audio'.",
        f"{where}.type",
        "unsupported_value",
    )
