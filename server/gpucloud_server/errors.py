"""The core's error hierarchy: each error carries the gRPC status it maps to.

The core never imports grpc here; `interceptor.py` turns these into aborts and
the gateway turns the resulting status codes into HTTP + the OpenAI envelope.
"""

from __future__ import annotations


class GpucloudError(Exception):
    """An error that is safe to show to the client, with its gRPC status name."""

    code: str = "INTERNAL"

    def __init__(
        self,
        message: str,
        *,
        retry_after_s: float | None = None,
        metadata: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s
        self.metadata = dict(metadata or {})


class InvalidArgument(GpucloudError):
    code = "INVALID_ARGUMENT"


class Unauthenticated(GpucloudError):
    code = "UNAUTHENTICATED"


class PermissionDenied(GpucloudError):
    code = "PERMISSION_DENIED"


class NotFound(GpucloudError):
    code = "NOT_FOUND"


class AlreadyExists(GpucloudError):
    code = "ALREADY_EXISTS"


class FailedPrecondition(GpucloudError):
    code = "FAILED_PRECONDITION"


class ResourceExhausted(GpucloudError):
    """Rate limited or queue full; `retry_after_s` says when to come back."""

    code = "RESOURCE_EXHAUSTED"


class Unavailable(GpucloudError):
    code = "UNAVAILABLE"


class Internal(GpucloudError):
    code = "INTERNAL"
