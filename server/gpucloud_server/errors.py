"""The core's error hierarchy: each error carries the gRPC status it maps to.

The core never imports grpc here; `interceptor.py` turns these into aborts (the
status, the message, and `code` / `param` / `retry_after_s` as trailing metadata)
and the gateway turns those into HTTP + the OpenAI error envelope.
"""

from __future__ import annotations


class GpucloudError(Exception):
    """An error that is safe to show to the client.

    `status` is the gRPC status name; `code` is the OpenAI-style error code
    (`queue_full`, `model_not_found`…) and `param` the request field at fault, both
    empty when the status says all; `headers` are extra trailing metadata (rate-limit
    headers on a refusal)."""

    status: str = "INTERNAL"

    def __init__(
        self,
        message: str,
        *,
        code: str = "",
        param: str = "",
        retry_after_s: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param
        self.retry_after_s = retry_after_s
        self.headers = dict(headers or {})


class InvalidArgument(GpucloudError):
    status = "INVALID_ARGUMENT"


class Unauthenticated(GpucloudError):
    status = "UNAUTHENTICATED"


class PermissionDenied(GpucloudError):
    status = "PERMISSION_DENIED"


class NotFound(GpucloudError):
    status = "NOT_FOUND"


class AlreadyExists(GpucloudError):
    status = "ALREADY_EXISTS"


class FailedPrecondition(GpucloudError):
    status = "FAILED_PRECONDITION"


class ResourceExhausted(GpucloudError):
    """Rate limited or queue full; `retry_after_s` says when to come back."""

    status = "RESOURCE_EXHAUSTED"


class Unavailable(GpucloudError):
    status = "UNAVAILABLE"


class Internal(GpucloudError):
    status = "INTERNAL"
