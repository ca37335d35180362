"""OpenAI embeddings (/v1/embeddings) without I/O: the request onto the contract, and the
list of vectors, as JSON numbers or as base64 (little-endian float32, what the SDKs ask
for and decode)."""

from __future__ import annotations

import base64
import sys
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

import orjson

from gpucloud.v1 import chat_pb2, scheduler_pb2
from gpucloud_gateway import openai_params as p
from gpucloud_gateway.errors import invalid
from gpucloud_gateway.fields import Body, Field, Integer, Schema, String
from gpucloud_gateway.validation import UINT32_MAX, type_error


class Embedding(TypedDict):
    object: Literal["embedding"]
    index: int
    # Numbers; or with `encoding_format: base64`, the little-endian float32 bytes in base64.
    embedding: list[float] | str


class EmbeddingUsage(TypedDict):
    prompt_tokens: int
    total_tokens: int


class CreateEmbeddingResponse(TypedDict):
    """One vector per input, in input order."""

    object: Literal["list"]
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage


def _token_ids(items: Sequence[Any], param: str) -> list[int] | None:
    """`items` as token ids, or None if they are not all integers."""
    if not all(isinstance(t, int) and not isinstance(t, bool) for t in items):
        return None
    if not all(0 <= t <= UINT32_MAX for t in items):
        raise invalid(f"Invalid '{param}': a token id is out of range.", param, "invalid_value")
    return list(items)


class Input(Field):
    """`input`: a text, texts, token ids, or arrays of token ids."""

    def check(self, value: Any) -> list[chat_pb2.EmbeddingInput]:
        if isinstance(value, str):
            return [chat_pb2.EmbeddingInput(text=value)]
        if not isinstance(value, list):
            raise type_error(self.param, "a string or an array", value)
        if value and (tokens := _token_ids(value, self.param)) is not None:
            return [chat_pb2.EmbeddingInput(token_ids=tokens)]
        out: list[chat_pb2.EmbeddingInput] = []
        for i, item in enumerate(value):
            where = f"{self.param}[{i}]"
            if isinstance(item, str):
                out.append(chat_pb2.EmbeddingInput(text=item))
            elif isinstance(item, list) and (tokens := _token_ids(item, where)) is not None:
                out.append(chat_pb2.EmbeddingInput(token_ids=tokens))
            else:
                raise type_error(where, "a string or an array of token ids", item)
        return out

    def schema(self) -> Schema:
        tokens = {"type": "array", "items": {"type": "integer", "minimum": 0}}
        return {
            "description": self.description,
            "anyOf": [
                {"type": "string"},
                {"type": "array", "items": {"type": "string"}},
                tokens,
                {"type": "array", "items": tokens},
            ],
        }


EMBEDDING_REQUEST = Body(
    "CreateEmbeddingRequest",
    "An embeddings request: OpenAI's schema, every documented parameter honoured. Members "
    "OpenAI does not document are ignored.",
    [
        Input("input", "What to embed: 1 to 2048 texts or token-id arrays.", required=True),
        String("model", "An embedding model.", required=True, example="sim-embed"),
        Integer(
            "dimensions",
            "Length of the vectors, for models that can shorten them.",
            0,
            UINT32_MAX,
        ),
        String(
            "encoding_format",
            "`float` (the default) or `base64`: little-endian float32 bytes.",
            enum=["float", "base64"],
        ),
        p.USER,
        p.PRIORITY,
    ],
    example={"model": "sim-embed", "input": ["The food was delicious.", "GPUs are fast."]},
)


@dataclass(frozen=True, slots=True)
class EmbeddingParams:
    request: scheduler_pb2.CreateEmbeddingRequest
    as_base64: bool


def parse_embedding_request(raw: bytes) -> EmbeddingParams:
    """Shape-checks an /embeddings body and maps it onto the contract."""
    values = EMBEDDING_REQUEST.parse(raw)
    request = scheduler_pb2.CreateEmbeddingRequest(
        model=values["model"], inputs=values["input"], user=values["user"] or ""
    )
    if (dimensions := values["dimensions"]) is not None:
        request.dimensions = dimensions
    if (priority := values["priority"]) is not None:
        request.priority = priority
    return EmbeddingParams(request, values["encoding_format"] == "base64")


def base64_vector(values: Sequence[float]) -> str:
    """The vector as the SDKs decode it: little-endian float32, base64."""
    packed = array("f", values)
    if sys.byteorder == "big":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode("ascii")


def embedding_body(reply: scheduler_pb2.CreateEmbeddingResponse, as_base64: bool) -> bytes:
    data: list[Embedding] = [
        {
            "object": "embedding",
            "index": e.index,
            "embedding": base64_vector(e.values) if as_base64 else list(e.values),
        }
        for e in reply.data
    ]
    usage = reply.usage
    body: CreateEmbeddingResponse = {
        "object": "list",
        "data": data,
        "model": reply.started.model,
        "usage": {
            "prompt_tokens": usage.prompt_tokens,
            "total_tokens": usage.total_tokens or usage.prompt_tokens,
        },
    }
    return orjson.dumps(body)
