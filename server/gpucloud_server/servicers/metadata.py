"""Reading and writing the gRPC metadata the servicers share (credentials, request ids)."""

from __future__ import annotations

import uuid
from typing import Any, TypeAlias

import grpc

REQUEST_ID = "x-request-id"

# The context of any call: these helpers read its metadata, never its messages.
AnyContext: TypeAlias = grpc.aio.ServicerContext[Any, Any]


def _get(context: AnyContext, name: str) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == name:
            return value if isinstance(value, str) else value.decode()
    return None


def bearer_token(context: AnyContext) -> str | None:
    """The credential of `authorization: Bearer <token>`, or None."""
    value = _get(context, "authorization")
    if value is None:
        return None
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def request_id(context: AnyContext) -> str:
    """The caller's x-request-id when it sent a sane one, else a fresh id."""
    value = _get(context, REQUEST_ID)
    if value and len(value) <= 128 and value.isprintable():
        return value
    return uuid.uuid4().hex
