"""The `openai` backend: forwards tasks to an OpenAI-compatible inference server.

Any server that speaks `/v1/models` and streaming `/v1/chat/completions` works
(vLLM, SGLang, llama.cpp, Ollama, TGI); text completions go to `/v1/completions`,
embeddings to `/v1/embeddings`. What the task sets is passed through
(openai_requests) and what the upstream streams back relayed (openai_relay). The
worker declares what its upstream can do, as its operator says (`--capabilities`,
`--embedding-models`): the core then sends only what the upstream can honour, and
what the upstream refuses anyway reaches the client as its own 400.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from dataclasses import asdict, replace
from typing import Any

import httpx

from gpucloud_worker.backend import (
    BackendError,
    Capabilities,
    Chunk,
    EmbeddingRequest,
    Embeddings,
    ErrorKind,
    Finish,
    GenerationRequest,
    Health,
    ModelOffer,
    WorkerDescription,
)
from gpucloud_worker.nvml import Nvml, describe
from gpucloud_worker.openai_errors import connection_failure, status_error
from gpucloud_worker.openai_relay import Echo, Relay, decode, sse_data
from gpucloud_worker.openai_requests import (
    chat_body,
    completion_body,
    embeddings_body,
    estimate_completion_prompt_tokens,
    estimate_prompt_tokens,
    upstream_echoes,
)

__all__ = ["CHAT_CAPABILITIES", "OpenAIBackend", "estimate_prompt_tokens"]

log = logging.getLogger(__name__)

BACKEND_NAME = "openai"
_TRAFFIC_WINDOW_S = 10.0  # two heartbeats
# What vLLM, SGLang and llama.cpp's llama-server do with a chat model (llama-cpp-python's
# server lacks json_schema: --capabilities tools,logprobs,completions for it).
CHAT_CAPABILITIES = Capabilities(tools=True, json_schema=True, logprobs=True, completions=True)


class OpenAIBackend:
    """Runs each task on the upstream server: a chat as one streamed chat completion, a
    text completion as one streamed completion per prompt, an embedding task as one
    embeddings request.

    `upstream` is the API base URL as the OpenAI SDK takes it, e.g.
    `http://127.0.0.1:8000/v1`. `models=None` discovers them from the upstream's
    `/models`, waiting up to `startup_timeout` seconds for it to answer.
    `capabilities` are its chat models'; `embedding_models` maps the ids of those
    that embed to their vector length (0: unknown), offered even where `models`
    leaves them out. `max_context` is every model's context in tokens; 0 takes what
    the upstream's `/models` says, if anything.
    """

    def __init__(
        self,
        upstream: str,
        *,
        api_key: str | None = None,
        models: Sequence[str] | None = None,
        slots: int = 8,
        speed: float = 1.0,
        connect_timeout: float = 5.0,
        read_timeout: float = 300.0,
        health_timeout: float = 3.0,
        startup_timeout: float = 60.0,
        capabilities: Capabilities = CHAT_CAPABILITIES,
        embedding_models: Mapping[str, int] | None = None,
        max_context: int = 0,
        nvml: Nvml | None = None,
    ) -> None:
        if slots < 1:
            raise ValueError("slots must be at least 1")
        self._base_url = upstream.rstrip("/") + "/"
        self._api_key = api_key
        self._configured_models = tuple(models) if models is not None else None
        self._capabilities = capabilities
        self._embedding_models = dict(embedding_models or {})
        self._max_context = max_context
        self._slots = slots
        self._speed = speed
        self._timeout = httpx.Timeout(read_timeout, connect=connect_timeout)
        self._health_timeout = health_timeout
        self._startup_timeout = startup_timeout
        self._nvml = nvml
        self._client: httpx.AsyncClient | None = None
        self._healthy = True
        self._streams = 0
        self._last_traffic = 0.0

    async def start(self) -> WorkerDescription:
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        # One connection per slot plus one for the health probe.
        limits = httpx.Limits(max_connections=self._slots + 1, max_keepalive_connections=2)
        self._client = httpx.AsyncClient(
            base_url=self._base_url, headers=headers, timeout=self._timeout, limits=limits
        )
        if self._nvml is None:
            self._nvml = await asyncio.to_thread(Nvml.open)
        if self._nvml.available:
            samples = await asyncio.to_thread(self._nvml.sample)
            log.info("GPUs at start:\n%s", describe(samples, self._nvml.specs()))
        models = await self._models()
        log.info(
            "openai backend: upstream %s serves %s",
            self._base_url,
            "; ".join(f"{m.id} ({_summary(m.capabilities)})" for m in models),
        )
        return WorkerDescription(
            backend=BACKEND_NAME,
            gpus=self._nvml.specs(),
            models=models,
            slots=self._slots,
            speed=self._speed,
        )

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[Chunk | Finish, None]:
        client = self._require_client()
        completion = request.completion
        if completion is None:
            calls = [("chat/completions", chat_body(request))]
            estimate = estimate_prompt_tokens(request.messages, request.tools)
            relay = Relay(request.n, estimate, top_logprobs=request.top_logprobs)
        else:
            # One request per prompt, one after the other: llama-cpp-python, Ollama and
            # TGI take a single prompt only, and some cut a stream to serve another.
            calls = [
                ("completions", completion_body(request, completion, p)) for p in completion.prompts
            ]
            prompts = [p for p in completion.prompts for _ in range(request.n)]  # by choice
            echo = Echo(prompts, asked=upstream_echoes(request)) if completion.echo else None
            relay = Relay(len(prompts), estimate_completion_prompt_tokens(completion), echo)
        for number, (path, body) in enumerate(calls):
            relay.begin(number * request.n)
            async for chunk in self._stream(client, path, body, relay):
                yield chunk
        yield relay.finish()

    async def _stream(
        self, client: httpx.AsyncClient, path: str, body: dict[str, Any], relay: Relay
    ) -> AsyncIterator[Chunk]:
        """One upstream request's chunks, as `relay` reads them."""
        try:
            # Leaving this block by aclose() or cancellation closes the response
            # before it was read to the end, which drops the connection: that is
            # how the upstream learns to stop generating.
            async with self._traffic(), client.stream("POST", path, json=body) as r:
                if r.is_error:
                    raise await status_error(r)
                async for data in sse_data(r):
                    self._last_traffic = time.monotonic()
                    if data == "[DONE]":
                        break
                    for chunk in relay.feed(decode(data)):
                        yield chunk
        except httpx.HTTPError as error:
            raise relay.failure(connection_failure(error)) from error

    async def embed(self, request: EmbeddingRequest) -> Embeddings:
        dimensions = self._embedding_models.get(request.model)
        if dimensions is None:  # the core sends none: the worker did not offer it so
            raise BackendError(
                ErrorKind.INVALID_REQUEST, f"the model '{request.model}' is not an embedding model"
            )
        client = self._require_client()
        try:
            async with self._traffic():
                r = await client.post("embeddings", json=embeddings_body(request, dimensions))
        except httpx.HTTPError as error:
            raise BackendError(ErrorKind.RETRYABLE, connection_failure(error)) from error
        if r.is_error:
            raise await status_error(r)
        return _embeddings(r, len(request.inputs))

    async def health(self) -> Health:
        nvml = self._nvml
        gpus = await asyncio.to_thread(nvml.sample) if nvml is not None and nvml.available else ()
        problem = None if self._streaming() else await self._probe()
        if (problem is None) != self._healthy:
            self._healthy = problem is None
            if problem is None:
                log.info("upstream %s answers again", self._base_url)
            else:
                log.warning("upstream %s unhealthy: %s", self._base_url, problem)
        return Health(gpus=gpus, healthy=problem is None, message=problem or "")

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
        nvml, self._nvml = self._nvml, None
        if nvml is not None:
            nvml.close()

    def _require_client(self) -> httpx.AsyncClient:
        if self._client is None:
            raise BackendError(ErrorKind.INTERNAL, "openai backend used before start()")
        return self._client

    @contextlib.asynccontextmanager
    async def _traffic(self) -> AsyncIterator[None]:
        """Marks a request to the upstream as under way, for `_streaming`."""
        self._streams += 1
        self._last_traffic = time.monotonic()
        try:
            yield
        finally:
            self._streams -= 1

    def _streaming(self) -> bool:
        """Whether a stream is flowing now, which proves the upstream alive without a probe.

        Servers that run one request at a time (llama-cpp-python) would hold a probe
        until the stream ends, or even cut the stream short to answer it.
        """
        return self._streams > 0 and time.monotonic() - self._last_traffic < _TRAFFIC_WINDOW_S

    async def _probe(self) -> str | None:
        """None when the upstream lists its models within the health timeout, else why not."""
        try:
            response = await self._require_client().get("models", timeout=self._health_timeout)
        except httpx.HTTPError as error:
            return f"upstream unreachable ({type(error).__name__})"
        if response.is_error:
            return f"upstream answered HTTP {response.status_code} to GET /models"
        return None

    async def _models(self) -> tuple[ModelOffer, ...]:
        """The models offered: as configured or listed, and the embedding models."""
        if self._configured_models is not None:
            listed = [(m, "upstream", 0) for m in self._configured_models]
        else:
            listed = await self._discover_in_time()
        ids = {model_id for model_id, _, _ in listed}
        unlisted = [m for m in self._embedding_models if m not in ids]
        if unlisted and self._configured_models is None:
            log.warning("upstream %s does not list %s", self._base_url, ", ".join(unlisted))
        listed += [(m, "upstream", 0) for m in unlisted]
        return tuple(self._offer(*model) for model in listed)

    def _offer(self, model_id: str, owned_by: str, context: int) -> ModelOffer:
        """A model and what it can do; a --max-context wins over what the upstream says."""
        context = self._max_context or context
        dimensions = self._embedding_models.get(model_id)
        if dimensions is None:
            capabilities = replace(self._capabilities, max_context_tokens=context)
        else:
            capabilities = Capabilities(
                embeddings=True, embedding_dimensions=dimensions, max_context_tokens=context
            )
        return ModelOffer(model_id, owned_by, capabilities)

    async def _discover_in_time(self) -> list[tuple[str, str, int]]:
        deadline = time.monotonic() + self._startup_timeout
        delay = 0.25
        while True:
            try:
                return await self._discover()
            except (httpx.HTTPError, BackendError) as error:
                if time.monotonic() + delay > deadline:
                    raise BackendError(
                        ErrorKind.INTERNAL,
                        f"could not discover the models of {self._base_url}: {error}",
                    ) from error
                log.info("waiting for upstream %s: %s", self._base_url, error)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _discover(self) -> list[tuple[str, str, int]]:
        """The upstream's models: id, owner and context (0: not said)."""
        response = await self._require_client().get("models", timeout=self._health_timeout)
        if response.is_error:
            raise BackendError(ErrorKind.RETRYABLE, f"GET /models: HTTP {response.status_code}")
        try:
            models = [
                (str(e["id"]), str(e.get("owned_by") or "upstream"), _context(e))
                for e in response.json().get("data") or ()
            ]
        except (AttributeError, KeyError, TypeError, ValueError) as error:
            raise BackendError(ErrorKind.RETRYABLE, "GET /models: not a model list") from error
        if not models:
            raise BackendError(ErrorKind.RETRYABLE, "the upstream serves no model")
        return models


def _context(entry: dict[str, Any]) -> int:
    """A /models entry's context length: vLLM's and SGLang's `max_model_len`, llama.cpp's
    `meta.n_ctx_train`; 0 when it says none."""
    meta = entry.get("meta")
    value = entry.get("max_model_len") or (meta.get("n_ctx_train") if isinstance(meta, dict) else 0)
    return value if isinstance(value, int) and value > 0 else 0


def _embeddings(response: httpx.Response, inputs: int) -> Embeddings:
    """The upstream's vectors in input order, scaled to unit length (as OpenAI's are)."""
    try:
        body = response.json()
        data = sorted(body["data"], key=lambda d: int(d["index"]))
        vectors = tuple(_unit([float(x) for x in d["embedding"]]) for d in data)
        usage = body.get("usage")
        prompt_tokens = int((usage.get("prompt_tokens") if isinstance(usage, dict) else 0) or 0)
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        # One answer per model and input kind: another try would fare no better.
        log.error("upstream sent embeddings that are not vectors: %s", error)
        raise BackendError(
            ErrorKind.INTERNAL, "the upstream sent embeddings that are not vectors"
        ) from error
    if len(vectors) != inputs:
        raise BackendError(
            ErrorKind.INTERNAL, f"the upstream sent {len(vectors)} embeddings for {inputs} inputs"
        )
    return Embeddings(vectors, prompt_tokens)


def _unit(vector: list[float]) -> tuple[float, ...]:
    norm = math.sqrt(math.fsum(x * x for x in vector))
    return tuple(x / norm for x in vector) if norm > 0 else tuple(vector)


def _summary(capabilities: Capabilities) -> str:
    """What a model can do, for the log: its features and context."""
    features = [name for name, on in asdict(capabilities).items() if on is True]
    context = capabilities.max_context_tokens
    return ", ".join([*features, f"context {context}" if context else "context unknown"])
