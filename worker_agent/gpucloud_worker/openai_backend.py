"""The `openai` backend: forwards tasks to an OpenAI-compatible inference server.

Any server that speaks `/v1/models` and streaming `/v1/chat/completions` works
(vLLM, SGLang, llama.cpp, Ollama, TGI). Token accounting: each content delta is
relayed as one Chunk worth 1 token (servers stream one token per delta; a server
that batches several per delta is under-counted there). The Finish carries the
upstream's own usage when it sends a usage chunk (`stream_options.include_usage`),
else the counted deltas and a prompt estimate (see `estimate_prompt_tokens`), which
the first chunk carries too, for tasks that end before their Finish.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any

import httpx
import orjson

from gpucloud_worker.backend import (
    BackendError,
    Chunk,
    EmbeddingRequest,
    Embeddings,
    ErrorKind,
    Finish,
    FinishReason,
    GenerationRequest,
    Health,
    Message,
    ModelOffer,
    WorkerDescription,
)
from gpucloud_worker.nvml import Nvml, describe

log = logging.getLogger(__name__)

BACKEND_NAME = "openai"
_MAX_ERROR_CHARS = 500
_TRAFFIC_WINDOW_S = 10.0  # two heartbeats
_FINISH_REASONS = {"stop": FinishReason.STOP, "length": FinishReason.LENGTH}


class OpenAIBackend:
    """Runs each task as one streaming chat completion on the upstream server.

    `upstream` is the API base URL as the OpenAI SDK takes it, e.g.
    `http://127.0.0.1:8000/v1`. `models=None` discovers them from the upstream's
    `/models`, waiting up to `startup_timeout` seconds for it to answer.
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
        nvml: Nvml | None = None,
    ) -> None:
        if slots < 1:
            raise ValueError("slots must be at least 1")
        self._base_url = upstream.rstrip("/") + "/"
        self._api_key = api_key
        self._configured_models = tuple(models) if models is not None else None
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
            ", ".join(m.id for m in models),
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
        stream = _Stream(request.n, estimate_prompt_tokens(request.messages))
        self._streams += 1
        try:
            # Leaving this block by aclose() or cancellation closes the response
            # before it was read to the end, which drops the connection: that is
            # how the upstream learns to stop generating.
            async with client.stream("POST", "chat/completions", json=request_body(request)) as r:
                if r.is_error:
                    raise await _status_error(r)
                self._last_traffic = time.monotonic()
                async for data in _sse_data(r):
                    self._last_traffic = time.monotonic()
                    if data == "[DONE]":
                        break
                    for chunk in stream.feed(_decode(data)):
                        yield chunk
        except httpx.HTTPError as error:
            raise stream.failure(_describe(error)) from error
        finally:
            self._streams -= 1
        yield stream.finish()

    async def embed(self, request: EmbeddingRequest) -> Embeddings:
        """No model of this backend is an embedding model: the core sends it none."""
        raise BackendError(
            ErrorKind.INVALID_REQUEST, f"the model '{request.model}' is not an embedding model"
        )

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
        if self._configured_models is not None:
            return tuple(ModelOffer(id=m, owned_by="upstream") for m in self._configured_models)
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

    async def _discover(self) -> tuple[ModelOffer, ...]:
        response = await self._require_client().get("models", timeout=self._health_timeout)
        if response.is_error:
            raise BackendError(ErrorKind.RETRYABLE, f"GET /models: HTTP {response.status_code}")
        try:
            models = tuple(
                ModelOffer(id=str(e["id"]), owned_by=str(e.get("owned_by") or "upstream"))
                for e in response.json().get("data") or ()
            )
        except (AttributeError, KeyError, TypeError, ValueError) as error:
            raise BackendError(ErrorKind.RETRYABLE, "GET /models: not a model list") from error
        if not models:
            raise BackendError(ErrorKind.RETRYABLE, "the upstream serves no model")
        return models


class _Stream:
    """What one upstream stream has produced so far."""

    def __init__(self, n: int, prompt_estimate: int) -> None:
        self.n = n
        # Carried by the first chunk, so that a task that never finishes is still
        # billed for its prompt; the upstream's usage, if it comes, wins in the Finish.
        self.prompt_estimate = prompt_estimate
        self.deltas = 0
        self.reasons: dict[int, FinishReason] = {}
        self.usage: tuple[int, int, int] | None = None  # prompt, completion, cached

    def feed(self, event: dict[str, Any]) -> list[Chunk]:
        """The Chunks of one upstream event; notes its usage and finish reasons."""
        try:
            return self._feed(event)
        except (AttributeError, TypeError, ValueError) as error:
            raise httpx.DecodingError(f"malformed upstream event: {error}") from error

    def _feed(self, event: dict[str, Any]) -> list[Chunk]:
        if "error" in event:
            raise self._event_error(event["error"])
        usage = event.get("usage")
        if isinstance(usage, dict):
            # vLLM sends prompt_tokens_details only with --enable-prompt-tokens-details,
            # as null otherwise; without it nothing is known to be cached.
            details = usage.get("prompt_tokens_details")
            cached = details.get("cached_tokens") if isinstance(details, dict) else None
            self.usage = (
                int(usage.get("prompt_tokens") or 0),
                int(usage.get("completion_tokens") or 0),
                int(cached or 0),
            )
        chunks: list[Chunk] = []
        for choice in event.get("choices") or ():
            index = int(choice.get("index") or 0)
            content = (choice.get("delta") or {}).get("content")
            if content:
                prompt = 0 if self.deltas else self.prompt_estimate
                self.deltas += 1
                chunks.append(Chunk(index=index, text=content, tokens=1, prompt_tokens=prompt))
            reason = choice.get("finish_reason")
            if reason:
                self.reasons[index] = _FINISH_REASONS.get(reason, FinishReason.STOP)
        return chunks

    def failure(self, message: str) -> BackendError:
        """Before the first token the core may run the task elsewhere; after, it cannot."""
        if self.deltas:
            return BackendError(ErrorKind.INTERNAL, f"{message} after {self.deltas} token(s)")
        return BackendError(ErrorKind.RETRYABLE, message)

    def finish(self) -> Finish:
        if not self.reasons:
            # A clean end without a finish reason is the upstream failing this very
            # request (llama-cpp-python does so on context overflow): no retry.
            raise BackendError(ErrorKind.INTERNAL, "upstream ended the stream without finishing")
        missing = [i for i in range(self.n) if i not in self.reasons]
        if missing:
            log.warning("upstream returned no choice %s of n=%d; ending it empty", missing, self.n)
        reasons = tuple(self.reasons.get(i, FinishReason.STOP) for i in range(self.n))
        if self.usage is not None:
            prompt, completion, cached = self.usage
        else:
            prompt, completion, cached = self.prompt_estimate, self.deltas, 0
        return Finish(
            reasons=reasons,
            prompt_tokens=prompt,
            completion_tokens=completion,
            cached_tokens=max(0, min(cached, prompt)),
        )

    def _event_error(self, error: Any) -> BackendError:
        message, status = _error_fields(error)
        if 400 <= status < 500 and not self.deltas:
            return BackendError(ErrorKind.INVALID_REQUEST, message)
        return self.failure(f"upstream error: {message}")


def request_body(request: GenerationRequest) -> dict[str, Any]:
    """The upstream request: the task's parameters, streamed, with usage asked for."""
    body: dict[str, Any] = {
        "model": request.model,
        "messages": [{"role": m.role, "content": m.content} for m in request.messages],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if request.max_tokens > 0:
        body["max_tokens"] = request.max_tokens
    optional = {"temperature": request.temperature, "top_p": request.top_p, "seed": request.seed}
    body.update({k: v for k, v in optional.items() if v is not None})
    if request.stop:
        body["stop"] = list(request.stop)
    if request.n != 1:
        body["n"] = request.n
    return body


def estimate_prompt_tokens(messages: Sequence[Message]) -> int:
    """Prompt tokens when the upstream reports none.

    About 4 characters per token for English text, plus 3 tokens of chat framing
    per message and 3 to prime the reply (OpenAI's published rules of thumb).
    """
    return 3 + sum(3 + math.ceil(len(m.content) / 4) for m in messages)


async def _sse_data(response: httpx.Response) -> AsyncIterator[str]:
    """The `data` payload of each server-sent event (comments and other fields skipped)."""
    lines: list[str] = []
    async for line in response.aiter_lines():
        if not line:
            if lines:
                yield "\n".join(lines)
                lines = []
        elif line.startswith("data:"):
            lines.append(line[5:].removeprefix(" "))
    if lines:
        yield "\n".join(lines)


def _describe(error: httpx.HTTPError) -> str:
    if isinstance(error, httpx.TimeoutException):
        return f"upstream timed out ({type(error).__name__})"
    if isinstance(error, httpx.DecodingError):
        return f"upstream sent a malformed stream ({error})"
    return f"upstream connection failed ({type(error).__name__})"


def _decode(data: str) -> dict[str, Any]:
    try:
        event = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise httpx.DecodingError(
            f"upstream sent an event that is not JSON: {data[:80]!r}"
        ) from error
    if not isinstance(event, dict):
        raise httpx.DecodingError("upstream sent an event that is not a JSON object")
    return event


async def _status_error(response: httpx.Response) -> BackendError:
    """Maps an upstream HTTP error status: the client's fault, a retry, or ours."""
    await response.aread()
    status = response.status_code
    message = _error_message(response)
    details = {"upstream_status": str(status)}
    if status in (401, 403):
        # The worker's upstream key is wrong: not the client's fault, and no other
        # attempt on this worker would fare better.
        log.error("upstream rejected the worker's credentials: HTTP %d %s", status, message)
        return BackendError(ErrorKind.INTERNAL, "the upstream rejected the worker", details)
    if status in (408, 429) or status >= 500:
        return BackendError(ErrorKind.RETRYABLE, f"upstream HTTP {status}: {message}", details)
    return BackendError(ErrorKind.INVALID_REQUEST, message, details)


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:_MAX_ERROR_CHARS] or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error", body.get("detail", body))
        return _error_fields(error)[0]
    return str(body)[:_MAX_ERROR_CHARS]


def _error_fields(error: Any) -> tuple[str, int]:
    """The message and HTTP-like status of an OpenAI-style error object (or of anything else)."""
    if isinstance(error, dict):
        message = error.get("message") or error.get("msg") or str(error)
        code = error.get("code")
        status = code if isinstance(code, int) else 0
        return str(message)[:_MAX_ERROR_CHARS], status
    return str(error)[:_MAX_ERROR_CHARS], 0
