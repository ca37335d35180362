"""Gateway answers against the official openai-python models, strictly.

Each helper validates one answer with the SDK's pydantic model in strict mode (no
coercion: a number where a string belongs fails) and checks every object in it
for members the model does not declare, which the SDK's models accept silently.
So an answer that passes is one the SDK reads field for field. Streams are read
from the SSE text: `data:` lines, ending with `data: [DONE]`.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

import orjson
import pydantic
from openai.types import Completion, CreateEmbeddingResponse
from openai.types.chat import ChatCompletion, ChatCompletionChunk

Json = dict[str, Any]
# Members the SDK reads without declaring them: the stream's random padding.
_UNDECLARED_OK = frozenset({"obfuscation"})


def declared_only(model: pydantic.BaseModel, where: str = "$") -> None:
    """Fails if `model`, or an object in it, has members its SDK model does not declare."""
    extra = set(model.model_extra or {}) - _UNDECLARED_OK
    assert not extra, f"{where}: members the SDK does not declare: {sorted(extra)}"
    for name in type(model).model_fields:
        _walk(getattr(model, name), f"{where}.{name}")


def _walk(value: Any, where: str) -> None:
    if isinstance(value, pydantic.BaseModel):
        declared_only(value, where)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _walk(item, f"{where}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            _walk(item, f"{where}.{key}")


def chat_completion(body: Json) -> ChatCompletion:
    answer = ChatCompletion.model_validate(body, strict=True)
    declared_only(answer)
    return answer


def chat_chunk(chunk: Json) -> ChatCompletionChunk:
    answer = ChatCompletionChunk.model_validate(chunk, strict=True)
    declared_only(answer)
    return answer


def completion(body: Json) -> Completion:
    answer = Completion.model_validate(body, strict=True)
    declared_only(answer)
    return answer


def completion_chunk(chunk: Json) -> Completion:
    """A streamed `text_completion` chunk. Its choices' `finish_reason` is null until their
    last chunk, as OpenAI streams it, though the SDK's model (shared with whole answers)
    declares no null: nulls are checked here, and the rest by the model."""
    copy = orjson.loads(orjson.dumps(chunk))
    for choice in copy["choices"]:
        assert "finish_reason" in choice
        if choice["finish_reason"] is None:
            choice["finish_reason"] = "stop"
    return completion(copy)


def embeddings(body: Json) -> CreateEmbeddingResponse:
    """An embeddings answer; base64 vectors are decoded first, as the SDK does."""
    copy = orjson.loads(orjson.dumps(body))
    for item in copy["data"]:
        if isinstance(item["embedding"], str):
            item["embedding"] = decode_vector(item["embedding"])
    answer = CreateEmbeddingResponse.model_validate(copy, strict=True)
    declared_only(answer)
    return answer


def decode_vector(text: str) -> list[float]:
    """A base64 vector as the SDK reads it: little-endian float32."""
    raw = base64.b64decode(text, validate=True)
    assert len(raw) % 4 == 0
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def error(body: Json) -> Json:
    """The OpenAI error envelope; returns its `error` object."""
    assert set(body) == {"error"}, body
    inner: Json = body["error"]
    assert set(inner) == {"message", "type", "param", "code"}, inner
    assert isinstance(inner["message"], str) and inner["message"]
    return inner


def sse_data(text: str) -> list[Json]:
    """The JSON objects of a finished stream's `data:` lines; it must end with [DONE]."""
    events = [e for e in text.split("\n\n") if e.startswith("data: ")]
    assert events and events[-1] == "data: [DONE]", text[-300:]
    return [orjson.loads(e.removeprefix("data: ")) for e in events[:-1]]


def chat_stream(text: str) -> list[ChatCompletionChunk]:
    return [chat_chunk(chunk) for chunk in sse_data(text)]


def completion_stream(text: str) -> list[Completion]:
    return [completion_chunk(chunk) for chunk in sse_data(text)]
