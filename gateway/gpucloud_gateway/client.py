"""A small Python client for a gpucloud gateway: management API, chat, streaming, text
completions and embeddings.

    from gpucloud_gateway.client import Client

    with Client("http://127.0.0.1:3000") as cloud:
        cloud.login("admin@gpucloud.local", "admin123")
        cloud.create_key("my key")              # the secret is kept for chat calls
        print(cloud.chat([{"role": "user", "content": "Hello!"}])["choices"][0])
        for chunk in cloud.stream([{"role": "user", "content": "Hello!"}]):
            print(chunk["choices"][0]["delta"].get("content", "") if chunk["choices"] else "")
        print(cloud.complete("Once upon a time", max_tokens=32)["choices"][0]["text"])
        print(cloud.embed(["a text", "another"], "my-embedding-model")["data"][0]["embedding"])

`AsyncClient` has the same methods as coroutines (and `stream` as an async iterator):
each endpoint is declared once, on `_Endpoints`, as the `Call` it makes; `Client` and
`AsyncClient` only differ in how they execute a call.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any, Concatenate, Generic, Literal, ParamSpec, Self, TypeVar, overload

import httpx
import orjson

Auth = Literal["jwt", "key", "none"]
Json = dict[str, Any]
P = ParamSpec("P")
R = TypeVar("R")


class GpucloudError(Exception):
    """An error answer of the gateway, with the fields of its OpenAI-style envelope."""

    def __init__(self, status: int, error: Json, request_id: str | None) -> None:
        super().__init__(f"{status}: {error.get('message', '')}")
        self.status = status
        self.message = str(error.get("message", ""))
        self.type = error.get("type")
        self.code = error.get("code")
        self.param = error.get("param")
        self.request_id = request_id


def _raise_for(response: httpx.Response, body: bytes) -> None:
    if response.status_code < 400:
        return
    try:
        error = orjson.loads(body).get("error", {})
    except (orjson.JSONDecodeError, AttributeError):
        error = {"message": body.decode(errors="replace")}
    raise GpucloudError(response.status_code, error, response.headers.get("x-request-id"))


def _result(call: Call[R], response: httpx.Response) -> R:
    _raise_for(response, response.content)
    return call.result(orjson.loads(response.content))


_DONE: Json = {}


def _sse_chunk(line: str) -> Json | None:
    """The chunk of one SSE line; None for comments (queue position, keep-alive) and
    separators; `_DONE` at the end; raises for the error event of a failed stream."""
    if not line.startswith("data: "):
        return None
    payload = line[6:]
    if payload == "[DONE]":
        return _DONE
    chunk: Json = orjson.loads(payload)
    if "error" in chunk:
        raise GpucloudError(500, chunk["error"], None)
    return chunk


@dataclass(frozen=True, slots=True)
class Call(Generic[R]):
    """One HTTP exchange: what to send, and how the JSON answer becomes the result.

    `needs_model`: the body's `model` is to be the client's default model, which
    the executor first learns from /v1/models when it does not know it yet."""

    method: str
    path: str
    auth: Auth
    result: Callable[[Any], R]
    body: Json | None = None
    params: dict[str, int] | None = None
    needs_model: bool = False

    def with_model(self, model: str | None) -> Call[R]:
        return replace(self, body={**(self.body or {}), "model": model}, needs_model=False)


class _Endpoint(Generic[P, R]):
    """An endpoint declared once as a function that builds its `Call`; read on a client, it is
    a method executing that call: returning R on `Client`, an awaitable on `AsyncClient`."""

    def __init__(self, build: Callable[Concatenate[Any, P], Call[R]]) -> None:
        self._build = build

    @overload
    def __get__(self, client: None, owner: type) -> Self: ...
    @overload
    def __get__(self, client: Client, owner: type) -> Callable[P, R]: ...
    @overload
    def __get__(self, client: AsyncClient, owner: type) -> Callable[P, Awaitable[R]]: ...
    def __get__(self, client: _Endpoints | None, owner: type) -> Any:
        if client is None:
            return self
        build, execute = self._build, client._execute

        @functools.wraps(build)
        def method(*args: P.args, **kwargs: P.kwargs) -> Any:
            return execute(build(client, *args, **kwargs))

        return method


def _field(name: str, kind: Callable[[Any], R]) -> Callable[[Json], R]:
    return lambda answer: kind(answer[name])


class _Endpoints(ABC):
    """The gateway's endpoints and the client state they share (JWT, API key, default model)."""

    def __init__(self, token: str | None, api_key: str | None) -> None:
        self.token = token
        self.api_key = api_key
        self.model: str | None = None

    @abstractmethod
    def _execute(self, call: Call[Any]) -> Any:
        """Sends `call` and returns its result (`Client`) or an awaitable of it."""

    def _request(self, call: Call[Any]) -> dict[str, Any]:
        """The arguments of httpx's `request` for `call`, the same for both clients."""
        return {
            "method": call.method,
            "url": call.path,
            "content": None if call.body is None else orjson.dumps(call.body),
            "params": call.params,
            "headers": self._headers(call.auth),
        }

    def _headers(self, auth: Auth) -> dict[str, str]:
        secret = {"jwt": self.token, "key": self.api_key, "none": None}[auth]
        if auth != "none" and not secret:
            needed = "login() first" if auth == "jwt" else "an API key (create_key or api_key=)"
            raise GpucloudError(401, {"message": f"this call needs {needed}"}, None)
        headers = {"content-type": "application/json"}
        if secret:
            headers["authorization"] = f"Bearer {secret}"
        return headers

    def _signed_in(self, session: Json) -> Json:
        self.token = session["token"]
        return session

    def _adopt(self, created: Json, use: bool) -> Json:
        if use:
            self.api_key = created["secret"]
        return created

    def _learn_model(self, answer: Json) -> list[Json]:
        models = list(answer["data"])
        if self.model is None and models:
            self.model = models[0]["id"]
        return models

    def _chat_call(self, messages: list[Json], model: str | None, params: Json) -> Call[Json]:
        body = {"model": model or self.model, "messages": messages, **params}
        needs = model is None and self.model is None
        return Call("POST", "/v1/chat/completions", "key", dict, body, needs_model=needs)

    @_Endpoint
    def login(self, email: str, password: str) -> Call[Json]:
        body = {"email": email, "password": password}
        return Call("POST", "/api/auth/login", "none", self._signed_in, body)

    @_Endpoint
    def me(self) -> Call[Json]:
        return Call("GET", "/api/auth/me", "jwt", _field("user", dict))

    @_Endpoint
    def change_password(self, current: str, new: str) -> Call[Json]:
        """Ends every session of the account, this one's too: log in again afterwards."""
        body = {"currentPassword": current, "newPassword": new}
        return Call("POST", "/api/auth/password", "jwt", _field("user", dict), body)

    @_Endpoint
    def create_key(self, /, name: str, *, use: bool = True, **limits: Any) -> Call[Json]:
        """Creates a key (limits in the API's camelCase, e.g. rateLimitPerMinute=120);
        returns {key, secret} and, with `use`, sends the secret on chat calls from now on."""
        adopt = functools.partial(self._adopt, use=use)
        return Call("POST", "/api/keys", "jwt", adopt, {"name": name, **limits})

    @_Endpoint
    def list_keys(self) -> Call[list[Json]]:
        return Call("GET", "/api/keys", "jwt", _field("keys", list))

    @_Endpoint
    def revoke_key(self, key_id: str) -> Call[Json]:
        return Call("DELETE", f"/api/keys/{key_id}", "jwt", _field("key", dict))

    @_Endpoint
    def workers(self) -> Call[list[Json]]:
        return Call("GET", "/api/monitoring/workers", "jwt", _field("workers", list))

    @_Endpoint
    def queue(self) -> Call[Json]:
        return Call("GET", "/api/monitoring/queue", "jwt", dict)

    @_Endpoint
    def metrics(self, window_minutes: int = 60, bucket_seconds: int = 60) -> Call[Json]:
        params = {"windowMinutes": window_minutes, "bucketSeconds": bucket_seconds}
        return Call("GET", "/api/monitoring/metrics", "jwt", dict, params=params)

    @_Endpoint
    def models(self) -> Call[list[Json]]:
        """The models served; the first becomes the default model of chat calls."""
        return Call("GET", "/v1/models", "key", self._learn_model)

    @_Endpoint
    def chat(self, /, messages: list[Json], model: str | None = None, **params: Any) -> Call[Json]:
        """One chat completion; `model` defaults to the first model the cloud serves."""
        return self._chat_call(messages, model, params)

    @_Endpoint
    def complete(
        self, /, prompt: str | list[str], model: str | None = None, **params: Any
    ) -> Call[Json]:
        """One legacy text completion; `model` defaults as for `chat`."""
        body = {"model": model or self.model, "prompt": prompt, **params}
        needs = model is None and self.model is None
        return Call("POST", "/v1/completions", "key", dict, body, needs_model=needs)

    @_Endpoint
    def embed(self, /, input: str | list[Any], model: str, **params: Any) -> Call[Json]:
        """The embeddings of a text, texts or token ids, with an embedding `model`."""
        body = {"model": model, "input": input, **params}
        return Call("POST", "/v1/embeddings", "key", dict, body)


class Client(_Endpoints):
    """Blocking client; `token` (a JWT) and `api_key` may be given or obtained."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:3000",
        *,
        token: str | None = None,
        api_key: str | None = None,
        timeout: float = 120.0,
    ) -> None:
        super().__init__(token, api_key)
        self._http = httpx.Client(base_url=base_url, timeout=timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _ready(self, call: Call[R]) -> Call[R]:
        if not call.needs_model:
            return call
        if self.model is None:
            self.models()
        return call.with_model(self.model)

    def _execute(self, call: Call[R]) -> R:
        call = self._ready(call)
        return _result(call, self._http.request(**self._request(call)))

    def stream(
        self, messages: list[Json], model: str | None = None, **params: Any
    ) -> Iterator[Json]:
        """Yields the `chat.completion.chunk` objects of a streamed completion."""
        call = self._ready(self._chat_call(messages, model, {**params, "stream": True}))
        content = orjson.dumps(call.body)
        headers = self._headers(call.auth)
        with self._http.stream(
            call.method, call.path, content=content, headers=headers
        ) as response:
            if response.status_code >= 400:
                _raise_for(response, response.read())
            for line in response.iter_lines():
                chunk = _sse_chunk(line)
                if chunk is _DONE:
                    return
                if chunk is not None:
                    yield chunk


class AsyncClient(_Endpoints):
    """The same client for asyncio code."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:3000",
        *,
        token: str | None = None,
        api_key: str | None = None,
        timeout: float = 120.0,
    ) -> None:
        super().__init__(token, api_key)
        self._http = httpx.AsyncClient(base_url=base_url, timeout=timeout)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _ready(self, call: Call[R]) -> Call[R]:
        if not call.needs_model:
            return call
        if self.model is None:
            await self.models()
        return call.with_model(self.model)

    async def _execute(self, call: Call[R]) -> R:
        call = await self._ready(call)
        return _result(call, await self._http.request(**self._request(call)))

    async def stream(
        self, messages: list[Json], model: str | None = None, **params: Any
    ) -> AsyncIterator[Json]:
        """Yields the `chat.completion.chunk` objects of a streamed completion."""
        call = await self._ready(self._chat_call(messages, model, {**params, "stream": True}))
        content = orjson.dumps(call.body)
        headers = self._headers(call.auth)
        async with self._http.stream(
            call.method, call.path, content=content, headers=headers
        ) as response:
            if response.status_code >= 400:
                _raise_for(response, await response.aread())
            async for line in response.aiter_lines():
                chunk = _sse_chunk(line)
                if chunk is _DONE:
                    return
                if chunk is not None:
                    yield chunk
