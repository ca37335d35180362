"""The gateway's settings: one frozen object, read once from flags and GPUCLOUD_* env in main()."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

from gpucloud_common.logs import LogFormat


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    """Everything the gateway process needs; nothing else reads the environment."""

    http_host: str = "127.0.0.1"
    http_port: int = 3000
    # host:port of the core's gRPC server.
    core_address: str = "127.0.0.1:50051"
    # Dial the core over TLS, verified against the system's roots (or core_tls_ca's).
    core_tls: bool = False
    # A CA or self-signed certificate (PEM) to trust for the core; implies TLS.
    core_tls_ca: Path | None = None
    # Request bodies above this many bytes get 413 before they are read in full.
    max_body_bytes: int = 1 << 20
    # A streaming response with nothing to say for this long sends an SSE comment.
    keepalive_s: float = 15.0
    # None = the packaged web/ (wheel) or the repository's web/ directory.
    web_dir: Path | None = None
    log_level: str = "info"
    log_format: LogFormat = "auto"
    # Per-call deadline of the management and ops calls to the core.
    core_timeout_s: float = 10.0
    # Bearer credential MonitorService accepts, for /readyz and the cluster gauges of /metrics.
    ops_token: str | None = None
    # Stop when stdin reaches EOF: `gpucloud up` sets it so its gateway never outlives it.
    exit_with_parent: bool = False

    @property
    def base_url(self) -> str:
        return f"http://{self.http_host}:{self.http_port}"


def add_arguments(parser: argparse.ArgumentParser, *, with_core: bool = True) -> None:
    """Flags of the gateway; each defaults to its GPUCLOUD_* variable. `gpucloud up`
    leaves out --core: it runs the core itself."""
    parser.add_argument("--http-host")
    parser.add_argument("--http-port", type=int)
    if with_core:
        parser.add_argument("--core", dest="core_address", help="core gRPC address, host:port")
        parser.add_argument(
            "--core-tls", action="store_true", default=None, help="dial the core over TLS"
        )
        parser.add_argument(
            "--core-tls-ca", type=Path, help="CA (PEM) to trust for the core; implies --core-tls"
        )
    parser.add_argument("--max-body-bytes", type=int)
    parser.add_argument("--keepalive-s", type=float)
    parser.add_argument("--web-dir", type=Path)
    parser.add_argument("--log-level")
    parser.add_argument("--log-format", choices=["auto", "json", "console"])
    parser.add_argument(
        "--exit-with-parent", action="store_true", default=None, help="stop when stdin closes"
    )


_ENV: dict[str, tuple[str, type]] = {
    "http_host": ("GPUCLOUD_HTTP_HOST", str),
    "http_port": ("GPUCLOUD_HTTP_PORT", int),
    "core_address": ("GPUCLOUD_CORE", str),
    "core_tls_ca": ("GPUCLOUD_CORE_TLS_CA", Path),
    "max_body_bytes": ("GPUCLOUD_MAX_BODY_BYTES", int),
    "keepalive_s": ("GPUCLOUD_SSE_KEEPALIVE_S", float),
    "web_dir": ("GPUCLOUD_WEB_DIR", Path),
    "log_level": ("GPUCLOUD_LOG_LEVEL", str),
    "log_format": ("GPUCLOUD_LOG_FORMAT", str),
    "core_timeout_s": ("GPUCLOUD_CORE_TIMEOUT_S", float),
    "ops_token": ("GPUCLOUD_OPS_TOKEN", str),
}


def from_sources(args: argparse.Namespace | None, env: Mapping[str, str]) -> GatewaySettings:
    """Flags win over env, env over defaults."""
    values: dict[str, object] = {}
    for name in (f.name for f in fields(GatewaySettings)):
        if name in _ENV and env.get(_ENV[name][0]):
            var, kind = _ENV[name]
            values[name] = kind(env[var])
        flag = getattr(args, name, None) if args is not None else None
        if flag is not None:
            values[name] = flag
    if values.get("log_format", "auto") not in ("auto", "json", "console"):
        raise ValueError(f"log format must be auto, json or console: {values['log_format']}")
    ca = values.get("core_tls_ca")
    if isinstance(ca, Path) and not ca.is_file():
        raise ValueError(f"core TLS CA not found: {ca}")
    return GatewaySettings(**values)  # type: ignore[arg-type]


def parse(argv: Sequence[str], env: Mapping[str, str] | None = None) -> GatewaySettings:
    parser = argparse.ArgumentParser(
        prog="gpucloud gateway", description="Run the gpucloud HTTP gateway."
    )
    add_arguments(parser)
    return from_sources(parser.parse_args(list(argv)), os.environ if env is None else env)
