"""Between the contract and scheduling.capabilities: what a request needs, and what a
worker's ModelCapabilities say, as plain values."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from typing import Any

from gpucloud.v1 import chat_pb2, scheduler_pb2, worker_pb2
from gpucloud_common.tokens import chat_tokens, text_tokens, tool_call_text, tools_text
from gpucloud_server.scheduling.capabilities import Capabilities, Needs, TaskKind

_FIELDS = tuple(f.name for f in dataclasses.fields(Capabilities))
_PART_NEEDS = {"image_url": "image_input", "input_audio": "audio_input", "file": "file_input"}


def from_proto(message: worker_pb2.ModelCapabilities) -> Capabilities:
    return Capabilities(**{name: getattr(message, name) for name in _FIELDS})


def to_proto(capabilities: Capabilities) -> worker_pb2.ModelCapabilities:
    return worker_pb2.ModelCapabilities(**dataclasses.asdict(capabilities))


def union(offers: Sequence[Capabilities]) -> Capabilities:
    """What any of `offers` can do; the largest context and vector length."""
    values: dict[str, bool | int] = {}
    for name in _FIELDS:
        seen = [getattr(c, name) for c in offers]
        values[name] = max(seen, default=False if name != "max_context_tokens" else 0)
    return Capabilities(**values)  # type: ignore[arg-type]


def message_texts(
    messages: Iterable[chat_pb2.ChatMessage], tools: Sequence[chat_pb2.Tool] = ()
) -> list[str]:
    """Each message's text as the token estimate counts it (its content, refusal and tool
    calls), and the tools' definitions as one more."""
    texts = [
        m.content + m.refusal + "".join(tool_call_text(c.name, c.arguments) for c in m.tool_calls)
        for m in messages
    ]
    if tools:
        definitions = ((t.name, t.description, _schema(t.parameters_json)) for t in tools)
        texts.append(tools_text(definitions))
    return texts


def _schema(text: str) -> dict[str, Any]:
    """A tool's parameters, which validation checked to be a JSON object."""
    value = json.loads(text) if text else {}
    return value if isinstance(value, dict) else {}


def chat_needs(request: scheduler_pb2.CreateChatCompletionRequest) -> Needs:
    sampling = request.sampling
    structured = request.response_format.type in (
        chat_pb2.RESPONSE_FORMAT_TYPE_JSON_OBJECT,
        chat_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA,
    )
    calls_tools = bool(request.tools) and request.tool_choice.mode != chat_pb2.TOOL_CHOICE_MODE_NONE
    parts: dict[str, str] = {}
    for i, message in enumerate(request.messages):
        for j, part in enumerate(message.parts):
            kind = part.WhichOneof("part")
            if kind in _PART_NEEDS:
                parts.setdefault(_PART_NEEDS[kind], f"messages[{i}].content[{j}]")
    needs = Needs(
        TaskKind.CHAT,
        tools="tools" if calls_tools else "",
        json_schema="response_format" if structured else "",
        logprobs="logprobs" if sampling.logprobs else "",
        prompt_tokens=chat_tokens(message_texts(request.messages, request.tools)),
        max_tokens=sampling.max_tokens,
    )
    return dataclasses.replace(
        needs,
        image_input=parts.get("image_input", ""),
        audio_input=parts.get("audio_input", ""),
        file_input=parts.get("file_input", ""),
    )


def completion_needs(request: scheduler_pb2.CreateCompletionRequest) -> Needs:
    prompt = request.prompt
    longest = max((text_tokens(p) for p in prompt.prompts), default=0)
    return Needs(
        TaskKind.COMPLETION,
        logprobs="logprobs" if request.sampling.logprobs else "",
        prompt_tokens=longest + text_tokens(prompt.suffix),
        max_tokens=request.sampling.max_tokens,
    )


def embedding_needs(request: scheduler_pb2.CreateEmbeddingRequest) -> Needs:
    longest = max(
        (len(i.token_ids) if i.token_ids else text_tokens(i.text) for i in request.inputs),
        default=0,
    )
    return Needs(
        TaskKind.EMBEDDING,
        dimensions=request.dimensions if request.HasField("dimensions") else None,
        prompt_tokens=longest,
    )
