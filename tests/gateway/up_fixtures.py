"""Fixtures for the end-to-end OpenAI-surface tests: one `gpucloud up` per test module,
an API key with room for many requests, and an openai SDK client whose every answer
(body or stream chunk) is checked strictly against openai-python's models.

A test module takes the fixtures by importing them under their own names
(`from up_fixtures import sdk as sdk`, which linters read as a deliberate re-export).
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import openai
import pydantic
import pytest
from openai.types import Completion, CreateEmbeddingResponse, Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response, ResponseStreamEvent
from openai.types.shared import ErrorObject
from up_process import ADMIN_EMAIL, ADMIN_PASSWORD, RunningCloud, running_cloud

from gpucloud_gateway.client import Client
from gpucloud_sim.models import CATALOG, ModelSpec

LLAMA = "meta-llama/Llama-3.1-8B-Instruct"
EMBEDDER = "BAAI/bge-small-en-v1.5"


@dataclass
class Exchange:
    """One HTTP request the SDK made and the bytes of its answer, as they came."""

    method: str
    path: str
    request: bytes
    status: int
    content_type: str
    body: bytearray = field(default_factory=bytearray)


class _Tee(httpx2.SyncByteStream):
    def __init__(self, inner: httpx2.SyncByteStream, sink: bytearray) -> None:
        self._inner = inner
        self._sink = sink

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._inner:
            self._sink.extend(chunk)
            yield chunk

    def close(self) -> None:
        self._inner.close()


class RecordingTransport(httpx2.BaseTransport):
    """Passes requests on and keeps a copy of every answer's bytes as the client reads them."""

    def __init__(self) -> None:
        self._inner = httpx2.HTTPTransport()
        self.exchanges: list[Exchange] = []

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        response = self._inner.handle_request(request)
        exchange = Exchange(
            request.method, request.url.path, request.read(), response.status_code,
            response.headers.get("content-type", ""),
        )  # fmt: skip
        self.exchanges.append(exchange)
        assert isinstance(response.stream, httpx2.SyncByteStream)
        return httpx2.Response(
            response.status_code,
            headers=response.headers,
            stream=_Tee(response.stream, exchange.body),
            extensions=response.extensions,
        )

    def close(self) -> None:
        self._inner.close()


# What each route answers, whole and as stream chunks (None: it does not stream).
_SHAPES: dict[str, tuple[Any, Any]] = {
    "/v1/chat/completions": (ChatCompletion, ChatCompletionChunk),
    "/v1/completions": (Completion, Completion),
    "/v1/embeddings": (CreateEmbeddingResponse, None),
    "/v1/responses": (Response, ResponseStreamEvent),
}
# Streams that end with `data: [DONE]` (the Responses API ends with its own event).
_DONE_TERMINATED = ("/v1/chat/completions", "/v1/completions")


def strict(shape: Any, data: Any, where: str) -> Any:
    """`data` validated by openai-python's model `shape` in strict mode (no coercion),
    with no field the model does not declare."""
    try:
        value = pydantic.TypeAdapter(shape).validate_python(data, strict=True)
    except pydantic.ValidationError as error:
        raise AssertionError(f"{where}: {error}\n{json.dumps(data)[:2000]}") from None
    _no_extra(value, where)
    return value


def _no_extra(value: Any, where: str) -> None:
    if isinstance(value, pydantic.BaseModel):
        extra = value.model_extra or {}
        assert not extra, f"{where}: fields openai-python does not know: {sorted(extra)}"
        for name in type(value).model_fields:
            _no_extra(getattr(value, name), f"{where}.{name}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _no_extra(item, f"{where}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            _no_extra(item, f"{where}.{key}")


def sse_data(body: str, where: str, done: bool) -> list[Any]:
    """The JSON payloads of a server-sent event stream, in order; with `done`, the stream
    must end with `data: [DONE]` and nothing may follow it."""
    payloads: list[str] = []
    for line in body.splitlines():
        if line.startswith("data:"):
            payloads.append(line[5:].strip())
    if done:
        assert payloads and payloads[-1] == "[DONE]", f"{where}: no final [DONE]: {body[-500:]}"
        payloads.pop()
    assert "[DONE]" not in payloads, f"{where}: data after [DONE]"
    return [json.loads(payload) for payload in payloads]


def _completion_chunk(data: Any) -> Any:
    """openai-python reads a streamed text completion with the whole completion's model,
    whose finish_reason is not optional, though the API streams null until a choice ends
    (as the chat chunk's model allows): a null reads as "stop" here, nothing else."""
    for choice in data.get("choices", []) if isinstance(data, dict) else []:
        if "finish_reason" in choice and choice["finish_reason"] is None:
            choice["finish_reason"] = "stop"
    return data


def _decoded_embeddings(data: Any, request: dict[str, Any], where: str) -> Any:
    """base64 embeddings (the SDK's default) as the float lists the model declares."""
    if request.get("encoding_format") != "base64" or not isinstance(data, dict):
        return data
    for item in data.get("data", []):
        packed = item.get("embedding")
        assert isinstance(packed, str), f"{where}: base64 asked, got {type(packed).__name__}"
        raw = base64.b64decode(packed, validate=True)
        assert len(raw) % 4 == 0, f"{where}: {len(raw)} bytes is not float32s"
        item["embedding"] = list(struct.unpack(f"<{len(raw) // 4}f", raw))
    return data


def check_exchange(
    path: str, request: dict[str, Any], status: int, content_type: str, body: bytes
) -> None:
    """One answer of the gateway against openai-python's models: an error envelope, a
    JSON body or an event stream, by route."""
    where = f"{path} {status}"
    if status >= 400:
        envelope = json.loads(body)
        assert set(envelope) == {"error"}, f"{where}: {envelope}"
        assert set(envelope["error"]) == {"message", "type", "param", "code"}, f"{where}"
        strict(ErrorObject, envelope["error"], where)
        return
    if path == "/v1/models":
        for entry in json.loads(body)["data"]:
            strict(Model, entry, where)
        return
    if path.startswith("/v1/models/"):
        strict(Model, json.loads(body), where)
        return
    whole, chunk = _SHAPES[path]
    if content_type.startswith("text/event-stream"):
        assert chunk is not None, f"{where}: streamed"
        for i, data in enumerate(sse_data(body.decode(), where, path in _DONE_TERMINATED)):
            if path == "/v1/completions":
                data = _completion_chunk(data)
            strict(chunk, data, f"{where} chunk {i}")
        return
    assert content_type.startswith("application/json"), f"{where}: {content_type}"
    strict(whole, _decoded_embeddings(json.loads(body), request, where), where)


def check_recorded(transport: RecordingTransport) -> int:
    """Checks every answer recorded so far; returns how many were checked."""
    for exchange in transport.exchanges:
        request = json.loads(exchange.request) if exchange.request else {}
        check_exchange(
            exchange.path, request, exchange.status, exchange.content_type, bytes(exchange.body)
        )
    return len(transport.exchanges)


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCloud]:
    """`gpucloud up` with the default simulated GPUs, answering without simulated delays."""
    data_dir: Path = tmp_path_factory.mktemp("up")
    with running_cloud(data_dir, "--sim-speed", "0") as running:
        yield running
        status = running.stop()
    assert status == 0, running.stderr()[-4000:]
    assert "Traceback" not in running.stderr(), running.stderr()[-4000:]


@pytest.fixture(scope="module")
def api_key(cloud: RunningCloud) -> str:
    """A key whose limits no test here reaches (the default is 60 requests a minute)."""
    with Client(cloud.base_url) as admin:
        admin.login(ADMIN_EMAIL, ADMIN_PASSWORD)
        created = admin.create_key(
            "e2e surface", use=False, rateLimitPerMinute=10_000, tokensPerMinute=100_000_000
        )
    return str(created["secret"])


@pytest.fixture
def recorder() -> Iterator[RecordingTransport]:
    transport = RecordingTransport()
    yield transport
    transport.close()


@pytest.fixture
def sdk(cloud: RunningCloud, api_key: str, recorder: RecordingTransport) -> Iterator[openai.OpenAI]:
    """The official sync client, no retries; after the test, every answer it received is
    checked against openai-python's models (a mismatch errors the test)."""
    http = httpx2.Client(transport=recorder, timeout=120)
    client = openai.OpenAI(
        base_url=cloud.openai_url, api_key=api_key, max_retries=0, http_client=http
    )
    yield client
    client.close()
    assert check_recorded(recorder) > 0, "the recording transport saw no answer"


def served(sdk: openai.OpenAI) -> list[ModelSpec]:
    """The catalog entries of the models the cloud serves."""
    ids = {model.id for model in sdk.models.list().data}
    return [spec for spec in CATALOG if spec.id in ids]
