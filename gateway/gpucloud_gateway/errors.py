"""The one place that turns failures into HTTP: gRPC status -> status code + OpenAI envelope.

Every error the gateway returns has the shape
`{"error": {"message", "type", "param", "code"}}`; permanent failures carry
`x-should-retry: false` and throttling carries `Retry-After` + `retry-after-ms`,
which the official SDKs honour.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping

import grpc
import orjson
from starlette.responses import Response

from gpucloud_gateway.openai_objects import ErrorResponse, error_envelope

log = logging.getLogger("gpucloud.gateway")

# status -> (HTTP status, OpenAI error type). The type is informative; SDKs map by status.
_GRPC_TO_HTTP: dict[grpc.StatusCode, tuple[int, str]] = {
    grpc.StatusCode.INVALID_ARGUMENT: (400, "invalid_request_error"),
    grpc.StatusCode.OUT_OF_RANGE: (400, "invalid_request_error"),
    grpc.StatusCode.FAILED_PRECONDITION: (400, "invalid_request_error"),
    grpc.StatusCode.UNAUTHENTICATED: (401, "authentication_error"),
    grpc.StatusCode.PERMISSION_DENIED: (403, "permission_error"),
    grpc.StatusCode.NOT_FOUND: (404, "not_found_error"),
    grpc.StatusCode.ALREADY_EXISTS: (409, "conflict_error"),
    grpc.StatusCode.ABORTED: (409, "conflict_error"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (429, "rate_limit_error"),
    grpc.StatusCode.CANCELLED: (499, "cancelled"),
    grpc.StatusCode.UNIMPLEMENTED: (501, "not_implemented_error"),
    grpc.StatusCode.UNAVAILABLE: (503, "service_unavailable_error"),
    grpc.StatusCode.DEADLINE_EXCEEDED: (504, "timeout_error"),
}
_INTERNAL = (500, "server_error")
# Statuses a client must not retry unchanged.
_PERMANENT = frozenset({400, 401, 403, 404, 405, 409, 413, 422, 501})
# Statuses that tell the client when to come back.
_THROTTLED = frozenset({429, 503})
_DEFAULT_RETRY_MS = 1000
# Status details the core never writes itself: transport failures whose text is not for clients.
_TRANSPORT_HINTS = (
    "failed to connect",
    "socket closed",
    "connection reset",
    "connections to all backends failing",
    "dns resolution failed",
    "broken pipe",
    "goaway",
    "unexpected <class",
)
_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
}


class ApiError(Exception):
    """An error with everything needed to answer it over HTTP."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type or _TYPES.get(status, "server_error" if status >= 500 else "api_error")
        self.param = param
        self.code = code
        self.headers = dict(headers or {})

    def envelope(self) -> ErrorResponse:
        return error_envelope(self.message, self.type, self.param, self.code)

    def response_headers(self) -> dict[str, str]:
        headers = dict(self.headers)
        if self.status in _PERMANENT:
            headers["x-should-retry"] = "false"
        if self.status in _THROTTLED:
            retry_ms = int(headers.get("retry-after-ms") or _DEFAULT_RETRY_MS)
            headers["retry-after-ms"] = str(retry_ms)
            headers["retry-after"] = str(max(1, math.ceil(retry_ms / 1000)))
        return headers


def invalid(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    """A 400 for a request the gateway itself rejects."""
    return ApiError(400, message, param=param, code=code or "invalid_request")


def _metadata_dict(metadata: Iterable[tuple[str, str | bytes]] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in metadata or ():
        out[key] = value if isinstance(value, str) else value.decode("latin-1")
    return out


def from_grpc(err: grpc.aio.AioRpcError, request_id: str) -> ApiError:
    """Maps a failed core call to the HTTP error the client sees."""
    code = err.code()
    status, err_type = _GRPC_TO_HTTP.get(code, _INTERNAL)
    trailing = _metadata_dict(err.trailing_metadata())
    details = err.details() or ""
    if status >= 500 and (code != grpc.StatusCode.UNAVAILABLE or _is_transport(details)):
        if code not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            log.error(
                "core call failed",
                extra={"request_id": request_id, "grpc_code": code.name, "details": details},
            )
        details = _generic_message(code, request_id)
    headers = {k: v for k, v in trailing.items() if k.startswith("x-ratelimit-")}
    if "retry-after-ms" in trailing:
        headers["retry-after-ms"] = trailing["retry-after-ms"]
    return ApiError(
        status,
        details or code.name.lower(),
        type=err_type,
        param=trailing.get("x-error-param") or None,
        code=trailing.get("x-error-code") or _default_code(code),
        headers=headers,
    )


def _is_transport(details: str) -> bool:
    lowered = details.lower()
    return any(hint in lowered for hint in _TRANSPORT_HINTS)


def _generic_message(code: grpc.StatusCode, request_id: str) -> str:
    if code == grpc.StatusCode.UNAVAILABLE:
        return "The inference service is temporarily unavailable; please retry."
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return "The inference service did not answer in time; please retry."
    return f"The server had an error processing your request (request id {request_id})."


def _default_code(code: grpc.StatusCode) -> str:
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return "rate_limit_exceeded"
    return str(code.name).lower()


def error_response(error: ApiError) -> Response:
    """The JSON error response; the request-context layer adds x-request-id."""
    return Response(
        orjson.dumps(error.envelope()),
        status_code=error.status,
        headers=error.response_headers(),
        media_type="application/json",
    )


def sse_error_event(error: ApiError) -> bytes:
    """The SSE event that ends a stream which failed after its headers were sent."""
    return b"data: " + orjson.dumps(error.envelope()) + b"\n\n"
