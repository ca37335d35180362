"""`gpucloud gateway`: the HTTP gateway process; SIGTERM or Ctrl-C stops it gracefully."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import grpc
import uvicorn

from gpucloud_common.channel import open_channel
from gpucloud_common.logs import setup_logging
from gpucloud_common.loop import run
from gpucloud_common.settings import load
from gpucloud_gateway import config
from gpucloud_gateway.app import create_app
from gpucloud_gateway.config import GatewaySettings

# Big enough for any chat request the body limit lets through, with room for metadata.
_MAX_MESSAGE_BYTES = 8 * 1024 * 1024
# In-flight responses get this long to finish once a shutdown begins.
GRACEFUL_SHUTDOWN_S = 5


def core_channel(
    address: str, *, tls: bool = False, tls_ca: Path | None = None
) -> grpc.aio.Channel:
    """The one channel every request shares (HTTP/2 multiplexes the calls)."""
    return open_channel(
        address,
        tls=tls,
        tls_ca=tls_ca,
        options=[
            ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
            ("grpc.keepalive_time_ms", 20_000),
            ("grpc.keepalive_timeout_ms", 10_000),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),
            # Reconnect fast after the core restarts; readiness reports the gap meanwhile.
            ("grpc.initial_reconnect_backoff_ms", 200),
            ("grpc.max_reconnect_backoff_ms", 5_000),
        ],
    )


def server(settings: GatewaySettings, channel: grpc.aio.Channel) -> uvicorn.Server:
    """A uvicorn server for the app; its serve() handles SIGINT/SIGTERM gracefully."""
    return uvicorn.Server(
        uvicorn.Config(
            create_app(settings, channel, cors_origins=settings.cors_allowed_origins),
            host=settings.http_host,
            port=settings.http_port,
            http="httptools",
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
            timeout_keep_alive=30,
        )
    )


class _StopOnEof(asyncio.Protocol):
    def __init__(self, target: uvicorn.Server) -> None:
        self._target = target

    def connection_lost(self, exc: Exception | None) -> None:
        self._target.should_exit = True


async def serve(settings: GatewaySettings) -> None:
    channel = core_channel(
        settings.core_address, tls=settings.core_tls, tls_ca=settings.core_tls_ca
    )
    http = server(settings, channel)
    if settings.exit_with_parent:
        # The parent holds the other end of our stdin; its death closes the pipe.
        await asyncio.get_running_loop().connect_read_pipe(lambda: _StopOnEof(http), sys.stdin)
    try:
        await http.serve()
    finally:
        await channel.close()


def main(argv: Sequence[str] | None = None) -> int:
    cli = config.parser()
    args = cli.parse_args(sys.argv[1:] if argv is None else list(argv))
    try:
        settings = load(GatewaySettings, args, os.environ)
        settings.check()
    except ValueError as err:
        cli.error(str(err))
    # uvicorn's Server.serve handles SIGINT/SIGTERM itself: graceful, then forced.
    setup_logging(settings.log_level, settings.log_format)
    run(serve(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
