"""A small Python client for a gpucloud gateway: management API, chat and streaming.

    from gpucloud_gateway.client import Client

    with Client("http://127.0.0.1:3000") as cloud:
        cloud.login("admin@gpucloud.local", "admin123")
        cloud.create_key("my key")              # the secret is kept for chat calls
        print(cloud.chat([{"role": "user", "content": "Hello!"}])["choices"][0])
        for chunk in cloud.stream([{"role": "user", "content": "Hello!"}]):
            print(chunk["choices"][0]["delta"].get("content", "") if chunk["choices"] else "")

`AsyncClient` has the same methods as coroutines (and `stream` as an async iterator).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any, Literal, Self

import httpx
import orjson

Auth = Literal["jwt", "key", "none"]


class GpucloudError(Exception):
    """An error answer of the gateway, with the fields of its OpenAI-style envelope."""

    def __init__(self, status: int, error: dict[str, Any], request_id: str | None) -> None:
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


_DONE: dict[str, Any] = {}


def _sse_chunk(line: str) -> dict[str, Any] | None:
    """The chunk of one SSE line; None for comments (queue position, keep-alive) and
    separators; `_DONE` at the end; raises for the error event of a failed stream."""
    if not line.startswith("data: "):
        return None
    payload = line[6:]
    if payload == "[DONE]":
        return _DONE
    chunk: dict[str, Any] = orjson.loads(payload)
    if "error" in chunk:
        raise GpucloudError(500, chunk["error"], None)
    return chunk


class _Base:
    """State and request shapes shared by the sync and async clients."""

    def __init__(self, token: str | None, api_key: str | None) -> None:
        self.token = token
        self.api_key = api_key
        self.model: str | None = None

    def _headers(self, auth: Auth) -> dict[str, str]:
        secret = {"jwt": self.token, "key": self.api_key, "none": None}[auth]
        if auth != "none" and not secret:
            needed = "login() first" if auth == "jwt" else "an API key (create_key or api_key=)"
            raise GpucloudError(401, {"message": f"this call needs {needed}"}, None)
        return {"authorization": f"Bearer {secret}"} if secret else {}

    def _chat_body(
        self, messages: list[dict[str, Any]], model: str | None, params: dict[str, Any]
    ) -> dict[str, Any]:
        return {"model": model or self.model, "messages": messages, **params}

    def _adopt(self, created: dict[str, Any], use: bool) -> dict[str, Any]:
        if use:
            self.api_key = created["secret"]
        return created

    @staticmethod
    def _key_body(name: str, limits: dict[str, Any]) -> dict[str, Any]:
        return {"name": name, **limits}


class Client(_Base):
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

    def _call(self, method: str, path: str, auth: Auth, body: Any = None) -> Any:
        content = None if body is None else orjson.dumps(body)
        headers = {**self._headers(auth), "content-type": "application/json"}
        response = self._http.request(method, path, content=content, headers=headers)
        _raise_for(response, response.content)
        return orjson.loads(response.content)

    def login(self, email: str, password: str) -> dict[str, Any]:
        session: dict[str, Any] = self._call(
            "POST", "/api/auth/login", "none", {"email": email, "password": password}
        )
        self.token = session["token"]
        return session

    def me(self) -> dict[str, Any]:
        return dict(self._call("GET", "/api/auth/me", "jwt")["user"])

    def change_password(self, current: str, new: str) -> dict[str, Any]:
        body = {"currentPassword": current, "newPassword": new}
        return dict(self._call("POST", "/api/auth/password", "jwt", body)["user"])

    def create_key(self, name: str, *, use: bool = True, **limits: Any) -> dict[str, Any]:
        """Creates a key (limits in the API's camelCase, e.g. rateLimitPerMinute=120);
        returns {key, secret} and, with `use`, sends the secret on chat calls from now on."""
        created = self._call("POST", "/api/keys", "jwt", self._key_body(name, limits))
        return self._adopt(created, use)

    def list_keys(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/api/keys", "jwt")["keys"])

    def revoke_key(self, key_id: str) -> dict[str, Any]:
        return dict(self._call("DELETE", f"/api/keys/{key_id}", "jwt")["key"])

    def workers(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/api/monitoring/workers", "jwt")["workers"])

    def queue(self) -> dict[str, Any]:
        return dict(self._call("GET", "/api/monitoring/queue", "jwt"))

    def metrics(self, window_minutes: int = 60, bucket_seconds: int = 60) -> dict[str, Any]:
        path = (
            f"/api/monitoring/metrics?windowMinutes={window_minutes}&bucketSeconds={bucket_seconds}"
        )
        return dict(self._call("GET", path, "jwt"))

    def models(self) -> list[dict[str, Any]]:
        models = list(self._call("GET", "/v1/models", "key")["data"])
        if self.model is None and models:
            self.model = models[0]["id"]
        return models

    def chat(
        self, messages: list[dict[str, Any]], model: str | None = None, **params: Any
    ) -> dict[str, Any]:
        """One chat completion; `model` defaults to the first model the cloud serves."""
        if model is None and self.model is None:
            self.models()
        return dict(
            self._call(
                "POST", "/v1/chat/completions", "key", self._chat_body(messages, model, params)
            )
        )

    def stream(
        self, messages: list[dict[str, Any]], model: str | None = None, **params: Any
    ) -> Iterator[dict[str, Any]]:
        """Yields the `chat.completion.chunk` objects of a streamed completion."""
        if model is None and self.model is None:
            self.models()
        body = {**self._chat_body(messages, model, params), "stream": True}
        headers = {**self._headers("key"), "content-type": "application/json"}
        with self._http.stream(
            "POST", "/v1/chat/completions", content=orjson.dumps(body), headers=headers
        ) as response:
            if response.status_code >= 400:
                _raise_for(response, response.read())
            for line in response.iter_lines():
                chunk = _sse_chunk(line)
                if chunk is _DONE:
                    return
                if chunk is not None:
                    yield chunk


class AsyncClient(_Base):
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

    async def _call(self, method: str, path: str, auth: Auth, body: Any = None) -> Any:
        content = None if body is None else orjson.dumps(body)
        headers = {**self._headers(auth), "content-type": "application/json"}
        response = await self._http.request(method, path, content=content, headers=headers)
        _raise_for(response, response.content)
        return orjson.loads(response.content)

    async def login(self, email: str, password: str) -> dict[str, Any]:
        session: dict[str, Any] = await self._call(
            "POST", "/api/auth/login", "none", {"email": email, "password": password}
        )
        self.token = session["token"]
        return session

    async def me(self) -> dict[str, Any]:
        return dict((await self._call("GET", "/api/auth/me", "jwt"))["user"])

    async def create_key(self, name: str, *, use: bool = True, **limits: Any) -> dict[str, Any]:
        created = await self._call("POST", "/api/keys", "jwt", self._key_body(name, limits))
        return self._adopt(created, use)

    async def list_keys(self) -> list[dict[str, Any]]:
        return list((await self._call("GET", "/api/keys", "jwt"))["keys"])

    async def revoke_key(self, key_id: str) -> dict[str, Any]:
        return dict((await self._call("DELETE", f"/api/keys/{key_id}", "jwt"))["key"])

    async def workers(self) -> list[dict[str, Any]]:
        return list((await self._call("GET", "/api/monitoring/workers", "jwt"))["workers"])

    async def models(self) -> list[dict[str, Any]]:
        models = list((await self._call("GET", "/v1/models", "key"))["data"])
        if self.model is None and models:
            self.model = models[0]["id"]
        return models

    async def chat(
        self, messages: list[dict[str, Any]], model: str | None = None, **params: Any
    ) -> dict[str, Any]:
        if model is None and self.model is None:
            await self.models()
        body = self._chat_body(messages, model, params)
        return dict(await self._call("POST", "/v1/chat/completions", "key", body))

    async def stream(
        self, messages: list[dict[str, Any]], model: str | None = None, **params: Any
    ) -> AsyncIterator[dict[str, Any]]:
        if model is None and self.model is None:
            await self.models()
        body = {**self._chat_body(messages, model, params), "stream": True}
        headers = {**self._headers("key"), "content-type": "application/json"}
        async with self._http.stream(
            "POST", "/v1/chat/completions", content=orjson.dumps(body), headers=headers
        ) as response:
            if response.status_code >= 400:
                _raise_for(response, await response.aread())
            async for line in response.aiter_lines():
                chunk = _sse_chunk(line)
                if chunk is _DONE:
                    return
                if chunk is not None:
                    yield chunk
