"""Fixtures for the end-to-end OpenAI-surface tests: one `gpucloud up` per test module,
an API key with room for many requests, and an openai SDK client whose every answer
(body or stream chunk) is checked strictly against openai-python's models.

A test module takes the fixtures by importing them under their own names
(`from up_fixtures import sdk as sdk`, which linters read as a deliberate re-export).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import conformance
import httpx2
import openai
import pydantic
import pytest
from openai.types import Model
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


def strict(shape: Any, data: Any, where: str) -> Any:
    """`data` validated by openai-python's `shape` in strict mode, with no member the
    model does not declare (conformance.py's rule, for the shapes it has no helper for)."""
    try:
        value = pydantic.TypeAdapter(shape).validate_python(data, strict=True)
    except pydantic.ValidationError as error:
        raise AssertionError(f"{where}: {error}\n{json.dumps(data)[:2000]}") from None
    assert isinstance(value, pydantic.BaseModel)
    conformance.declared_only(value, where)
    return value


_RESPONSE_ENDS = ("response.completed", "response.incomplete", "response.failed", "error")


def responses_events(text: str) -> list[Any]:
    """A Responses stream's events, each `event:` line naming its data's type; the API
    ends it with its own terminal event, not [DONE]."""
    events = []
    for block in text.split("\n\n"):
        lines = block.splitlines()
        data = [line.removeprefix("data: ") for line in lines if line.startswith("data: ")]
        if not data:
            continue
        assert len(data) == 1, block
        event = json.loads(data[0])
        named = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
        assert named in ([], [event["type"]]), block
        events.append(strict(ResponseStreamEvent, event, f"event {len(events)}"))
    assert events and events[-1].type in _RESPONSE_ENDS, text[-300:]
    return events


def _check_embeddings(body: Any, request: dict[str, Any]) -> None:
    """Vectors as asked: base64 text for encoding_format base64 (the SDK's default)."""
    packed = request.get("encoding_format") == "base64"
    for item in body["data"]:
        assert isinstance(item["embedding"], str if packed else list), request
    conformance.embeddings(body)


def _model(entry: dict[str, Any], where: str) -> None:
    """A model object: our one documented extension (as vLLM adds max_model_len) checked,
    then set aside, and the rest strictly."""
    extension = entry.pop("capabilities")
    assert extension["kind"] in ("chat", "embedding"), extension
    strict(Model, entry, where)


def check_exchange(
    path: str, request: dict[str, Any], status: int, content_type: str, body: bytes
) -> None:
    """One answer of the gateway against openai-python's models: an error envelope, a
    JSON body or an event stream, by route."""
    text = body.decode()
    streamed = content_type.startswith("text/event-stream")
    assert streamed or content_type.startswith("application/json"), (path, content_type)
    if status >= 400:
        strict(ErrorObject, conformance.error(json.loads(text)), f"{path} {status}")
    elif path == "/v1/models":
        for entry in json.loads(text)["data"]:
            _model(entry, path)
    elif path.startswith("/v1/models/"):
        _model(json.loads(text), path)
    elif streamed:
        _STREAMS[path](text)
    elif path == "/v1/embeddings":
        _check_embeddings(json.loads(text), request)
    else:
        _BODIES[path](json.loads(text))


# The check of each route's answer, streamed and whole (embeddings: above).
_STREAMS: dict[str, Callable[[str], object]] = {
    "/v1/chat/completions": conformance.chat_stream,
    "/v1/completions": conformance.completion_stream,
    "/v1/responses": responses_events,
}
_BODIES: dict[str, Callable[[Any], object]] = {
    "/v1/chat/completions": conformance.chat_completion,
    "/v1/completions": conformance.completion,
    "/v1/responses": lambda body: strict(Response, body, "/v1/responses"),
}


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
