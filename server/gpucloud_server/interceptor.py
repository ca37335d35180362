"""The core's one error boundary: GpucloudError -> gRPC status, anything else -> INTERNAL."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias

import grpc

from gpucloud_server.errors import GpucloudError
from gpucloud_server.servicers.metadata import request_id

log = logging.getLogger("gpucloud.core")

Context: TypeAlias = grpc.aio.ServicerContext


async def _abort(context: Context, error: GpucloudError) -> None:
    await context.abort(grpc.StatusCode[error.status], error.message, trailing_metadata(error))


def trailing_metadata(error: GpucloudError) -> tuple[tuple[str, str], ...]:
    """What a client needs beyond the status: the error code, the field at fault, when
    to retry, and any headers the error carries (rate limits on a refusal)."""
    trailing = list(error.headers.items())
    if error.code:
        trailing.append(("x-error-code", error.code))
    if error.param:
        trailing.append(("x-error-param", error.param))
    if error.retry_after_s is not None:
        trailing.append(("retry-after-ms", str(int(error.retry_after_s * 1000))))
    return tuple(trailing)


async def _internal(context: Context, method: str) -> None:
    rid = request_id(context)
    log.exception("unexpected error", extra={"request_id": rid, "method": method})
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error (request id {rid})")


def _wrap_unary(fn: Callable[[Any, Context], Awaitable[Any]], method: str) -> Callable[..., Any]:
    async def call(request: Any, context: Context) -> Any:
        try:
            return await fn(request, context)
        except GpucloudError as error:
            await _abort(context, error)
        except (grpc.aio.AbortError, asyncio.CancelledError):
            raise
        except Exception:
            await _internal(context, method)

    return call


def _wrap_stream(
    fn: Callable[[Any, Context], AsyncIterator[Any]], method: str
) -> Callable[..., Any]:
    async def call(request: Any, context: Context) -> AsyncIterator[Any]:
        try:
            async for response in fn(request, context):
                yield response
        except GpucloudError as error:
            await _abort(context, error)
        except (grpc.aio.AbortError, asyncio.CancelledError):
            raise
        except Exception:
            await _internal(context, method)

    return call


class ErrorInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Maps the error hierarchy to aborts with trailing metadata (e.g. retry-after-ms)."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        codec = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary(handler.unary_unary, method), **codec
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                _wrap_stream(handler.unary_stream, method), **codec
            )
        if handler.stream_stream:
            return grpc.stream_stream_rpc_method_handler(
                _wrap_stream(handler.stream_stream, method), **codec
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                _wrap_unary(handler.stream_unary, method), **codec
            )
        return handler
