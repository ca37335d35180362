"""Pure ASGI layers around every request: request id + one log line, and the body size limit."""

from __future__ import annotations

import logging
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gpucloud_gateway.errors import ApiError, error_response

access_log = logging.getLogger("gpucloud.gateway.access")

# API calls are logged at info; probes, scrapes and dashboard files at debug.
_API_PREFIXES = ("/v1/", "/api/")
# Client ids travel on as gRPC metadata, which must be ASCII: anything else gets a fresh id.
_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")


@dataclass(slots=True)
class RequestInfo:
    """What the routes learn about a request, for its log line."""

    request_id: str
    status: int = 0
    key_id: str | None = None
    model: str | None = None
    worker_id: str | None = None
    task_id: str | None = None
    stream: bool | None = None
    queue_wait_ms: int | None = None
    ttft_ms: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def request_info(request: Request) -> RequestInfo:
    info: RequestInfo = request.scope["state"]["info"]
    return info


def _incoming_request_id(scope: Scope) -> str:
    value: bytes
    for key, value in scope["headers"]:
        if key == b"x-request-id":
            if _REQUEST_ID.fullmatch(value):
                return value.decode("ascii")
            break
    return uuid.uuid4().hex


class RequestContext:
    """Gives each request an id (the client's x-request-id when sane), echoes it in the
    response headers, and writes one access log line when the response is done."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        info = RequestInfo(request_id=_incoming_request_id(scope))
        scope.setdefault("state", {})["info"] = info
        header = (b"x-request-id", info.request_id.encode("latin-1"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                info.status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            # The one boundary for the unexpected: logged with the request id, never shown.
            access_log.exception("unhandled error", extra={"request_id": info.request_id})
            if info.status:
                raise  # headers are out; the server closes the connection
            info.error = "internal"
            message = (
                f"The server had an error processing your request (request id {info.request_id})."
            )
            await error_response(ApiError(500, message))(scope, receive, send_with_id)
        finally:
            _log_request(scope, info, (time.perf_counter() - started) * 1000.0)


def _log_request(scope: Scope, info: RequestInfo, total_ms: float) -> None:
    path: str = scope["path"]
    api = path.startswith(_API_PREFIXES)
    level = logging.INFO if api or info.status >= 500 else logging.DEBUG
    if not access_log.isEnabledFor(level):
        return
    fields: dict[str, Any] = {
        "request_id": info.request_id,
        "method": scope["method"],
        "path": path,
        "status": info.status or 499,
        "total_ms": round(total_ms, 2),
    }
    for name in (
        "key_id",
        "model",
        "worker_id",
        "task_id",
        "stream",
        "queue_wait_ms",
        "ttft_ms",
        "prompt_tokens",
        "completion_tokens",
        "error",
    ):
        value = getattr(info, name)
        if value is not None:
            fields[name] = value
    fields.update(info.extra)
    client = scope.get("client")
    if client:
        fields["client"] = client[0]
    access_log.log(level, "request", extra=fields)


class BodyLimit:
    """Answers 413 for bodies over the limit: at once from Content-Length, and while the
    body streams in when its length was not declared, so a large body is never buffered."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for key, value in scope["headers"]:
            if key == b"content-length":
                if not value.isdigit() or int(value) > self.max_bytes:
                    await error_response(self._too_large())(scope, receive, send)
                    return
                break
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise self._too_large()
            return message

        await self.app(scope, counting_receive, send)

    def _too_large(self) -> ApiError:
        return ApiError(
            413,
            f"Request body is larger than the limit of {self.max_bytes} bytes.",
            code="request_too_large",
        )
