"""The gateway's settings: one frozen object, read once from flags and GPUCLOUD_* env in main()."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from gpucloud_common.logs import LogFormat, level_name
from gpucloud_common.settings import add_arguments, load, new_parser, option


def origins(text: str) -> tuple[str, ...]:
    """`https://a.example, https://b.example` or `*`: the origins CORS allows."""
    found = tuple(part.strip().rstrip("/") for part in text.split(",") if part.strip())
    for origin in found:
        if origin != "*" and not origin.startswith(("http://", "https://")):
            raise ValueError(f"{origin!r} is not an origin (scheme://host[:port]) or *")
    return found


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    """Everything the gateway process needs; nothing else reads the environment."""

    http_host: str = option(
        "127.0.0.1", flag="--http-host", env="GPUCLOUD_HTTP_HOST", help="HTTP bind address"
    )
    http_port: int = option(3000, flag="--http-port", env="GPUCLOUD_HTTP_PORT", help="HTTP port")
    core_address: str = option(
        "127.0.0.1:50051", flag="--core", env="GPUCLOUD_CORE", help="the core's gRPC HOST:PORT"
    )
    core_tls: bool = option(
        False, flag="--core-tls", help="dial the core over TLS, verified against the system's roots"
    )
    core_tls_ca: Path | None = option(
        None,
        flag="--core-tls-ca",
        env="GPUCLOUD_CORE_TLS_CA",
        parse=Path,
        help="CA or self-signed certificate (PEM) to trust for the core; implies --core-tls",
    )
    max_body_bytes: int = option(
        1 << 20,
        flag="--max-body-bytes",
        env="GPUCLOUD_MAX_BODY_BYTES",
        help="larger request bodies get 413 before they are read in full",
    )
    keepalive_s: float = option(
        15.0,
        flag="--keepalive-s",
        env="GPUCLOUD_SSE_KEEPALIVE_S",
        help="seconds of silence after which a stream sends an SSE comment",
    )
    web_dir: Path | None = option(
        None,
        flag="--web-dir",
        env="GPUCLOUD_WEB_DIR",
        parse=Path,
        help="the dashboard's directory",
        default_help="the packaged web/ (wheel) or the repository's",
    )
    log_level: str = option(
        "info",
        flag="--log-level",
        env="GPUCLOUD_LOG_LEVEL",
        parse=level_name,
        help="least severe level logged: debug, info, warning, error or critical",
    )
    log_format: LogFormat = option(
        "auto",
        flag="--log-format",
        env="GPUCLOUD_LOG_FORMAT",
        choices=("auto", "json", "console"),
        help="auto: JSON lines off a terminal, readable lines on one",
    )
    core_timeout_s: float = option(
        10.0, env="GPUCLOUD_CORE_TIMEOUT_S", help="deadline of unary calls to the core, seconds"
    )
    ops_token: str | None = option(
        None,
        env="GPUCLOUD_OPS_TOKEN",
        help="credential for the core's MonitorService (/readyz, cluster gauges of /metrics)",
    )
    cors_allowed_origins: tuple[str, ...] = option(
        (),
        flag="--cors-allowed-origins",
        env="GPUCLOUD_CORS_ALLOWED_ORIGINS",
        parse=origins,
        help="browser origins allowed to call the API (comma-separated, * for any)",
        default_help="none: CORS off",
    )
    exit_with_parent: bool = option(
        False,
        flag="--exit-with-parent",
        help="stop when stdin closes (how `gpucloud up` ties its gateway to itself)",
    )

    @property
    def base_url(self) -> str:
        return f"http://{self.http_host}:{self.http_port}"

    def check(self) -> None:
        """Refuses a CA file that is not there, rather than failing at the first call."""
        if self.core_tls_ca is not None and not self.core_tls_ca.is_file():
            raise ValueError(f"core TLS CA not found: {self.core_tls_ca}")


def parser() -> argparse.ArgumentParser:
    """`gpucloud gateway`'s command line: every option of the gateway."""
    cli = new_parser("gpucloud gateway", "Run the gpucloud HTTP gateway.")
    add_arguments(cli, GatewaySettings)
    return cli


def parse(argv: Sequence[str], env: Mapping[str, str]) -> GatewaySettings:
    """Checked settings from a command line and an environment; raises ValueError."""
    settings = load(GatewaySettings, parser().parse_args(list(argv)), env)
    settings.check()
    return settings
