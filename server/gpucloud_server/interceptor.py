"""The core's one error boundary: GpucloudError -> gRPC status, anything else -> INTERNAL."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeAlias, TypeVar, cast

import grpc

from gpucloud_server.errors import GpucloudError
from gpucloud_server.servicers.metadata import request_id

log = logging.getLogger("gpucloud.core")

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Arg = TypeVar("Arg")  # what a handler takes: one request, or the stream of them

if TYPE_CHECKING:
    # The handlers grpc.aio runs are coroutines and async generators; grpc's stubs type
    # the synchronous ones, so the interceptor names what it really receives.
    Context: TypeAlias = grpc.aio.ServicerContext[Req, Resp]
    Unary: TypeAlias = Callable[[Arg, Context[Req, Resp]], Awaitable[Resp]]
    Streaming: TypeAlias = Callable[[Arg, Context[Req, Resp]], AsyncIterator[Resp]]


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


async def _abort(context: Context[Any, Any], error: GpucloudError) -> NoReturn:
    await context.abort(grpc.StatusCode[error.status], error.message, trailing_metadata(error))


async def _internal(context: Context[Any, Any], method: str) -> NoReturn:
    rid = request_id(context)
    log.exception("unexpected error", extra={"request_id": rid, "method": method})
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error (request id {rid})")


def _wrap_unary(fn: Unary[Arg, Req, Resp], method: str) -> Unary[Arg, Req, Resp]:
    async def call(request: Arg, context: Context[Req, Resp]) -> Resp:
        try:
            return await fn(request, context)
        except GpucloudError as error:
            await _abort(context, error)
        except (grpc.aio.AbortError, asyncio.CancelledError):
            raise
        except Exception:
            await _internal(context, method)

    return call


def _wrap_stream(fn: Streaming[Arg, Req, Resp], method: str) -> Streaming[Arg, Req, Resp]:
    async def call(request: Arg, context: Context[Req, Resp]) -> AsyncIterator[Resp]:
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


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Maps the error hierarchy to aborts with trailing metadata (e.g. retry-after-ms)."""

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Req, Resp] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Req, Resp] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        decode, encode = handler.request_deserializer, handler.response_serializer
        if handler.unary_unary:
            unary = cast("Unary[Req, Req, Resp]", handler.unary_unary)
            return grpc.unary_unary_rpc_method_handler(_wrap_unary(unary, method), decode, encode)
        if handler.unary_stream:
            streaming = cast("Streaming[Req, Req, Resp]", handler.unary_stream)
            return grpc.unary_stream_rpc_method_handler(
                _wrap_stream(streaming, method), decode, encode
            )
        if handler.stream_stream:
            streams = cast("Streaming[AsyncIterator[Req], Req, Resp]", handler.stream_stream)
            return grpc.stream_stream_rpc_method_handler(
                _wrap_stream(streams, method), decode, encode
            )
        if handler.stream_unary:
            gathers = cast("Unary[AsyncIterator[Req], Req, Resp]", handler.stream_unary)
            return grpc.stream_unary_rpc_method_handler(
                _wrap_unary(gathers, method), decode, encode
            )
        return handler
