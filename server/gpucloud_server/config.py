"""The core's settings: one frozen object, read once from flags and GPUCLOUD_* env in main()."""

from __future__ import annotations

import argparse
import ipaddress
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

DEV_JOIN_TOKEN = "gpucloud-dev-join-token"  # noqa: S105 - public on purpose, loopback only
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def networks(text: str) -> tuple[Network, ...]:
    """`10.0.0.5, 10.1.0.0/16, ::1`: addresses and CIDR blocks, comma-separated."""
    return tuple(ipaddress.ip_network(part.strip()) for part in text.split(",") if part.strip())


LOOPBACK_NETWORKS = networks("127.0.0.0/8, ::1")


@dataclass(frozen=True, slots=True)
class CoreSettings:
    """Everything the core process needs; nothing else reads the environment."""

    grpc_host: str = "127.0.0.1"
    grpc_port: int = 50051
    data_dir: Path = field(default_factory=lambda: Path(".data"))
    # None = SQLite in data_dir; else a SQLAlchemy URL (postgresql+asyncpg://…).
    database_url: str | None = None
    # None = in-process rate limits; else redis://… shared by every core.
    redis_url: str | None = None
    # Read-only credential for MonitorService (the gateway's /readyz and /metrics).
    ops_token: str | None = None
    # The built-in token is only accepted on a loopback address (see check()).
    join_token: str = DEV_JOIN_TOKEN
    # None = generated once and kept in data_dir.
    jwt_secret: str | None = None
    jwt_ttl_s: int = 12 * 3600
    admin_email: str = "admin@gpucloud.local"
    admin_password: str = "admin123"  # noqa: S105 - documented default, flagged until changed
    default_requests_per_minute: int = 60
    default_tokens_per_minute: int = 100_000
    queue_capacity: int = 1000
    max_queue_wait_s: float = 300.0
    heartbeat_interval_s: float = 5.0
    missed_heartbeats: int = 3
    ageing_step_s: float = 10.0
    max_attempts: int = 3
    shutdown_grace_s: float = 10.0
    usage_flush_interval_s: float = 1.0
    # PostgreSQL pool: bounded, and an exhausted pool fails fast as UNAVAILABLE.
    db_pool_size: int = 10
    db_pool_timeout_s: float = 5.0
    db_connect_timeout_s: float = 5.0
    db_statement_timeout_s: float = 15.0
    # Prefix of every Redis key and channel, so several clusters can share one Redis.
    redis_namespace: str = "gpucloud"
    # Login throttling: failures allowed per account+IP and per IP within the window.
    login_max_failures: int = 5
    login_max_failures_per_ip: int = 50
    login_lockout_s: int = 900
    # Peers whose x-forwarded-for is believed (gateways); anyone else's own address counts.
    trusted_proxies: tuple[Network, ...] = LOOPBACK_NETWORKS
    # Serve TLS with this certificate chain and private key (PEM); both or neither.
    tls_cert: Path | None = None
    tls_key: Path | None = None

    @property
    def grpc_address(self) -> str:
        return f"{self.grpc_host}:{self.grpc_port}"

    def check(self) -> None:
        """Refuses settings that would expose the cluster (anyone could join a core that
        listens beyond loopback with the public built-in join token) or half-set TLS."""
        if self.join_token == DEV_JOIN_TOKEN and self.grpc_host not in LOOPBACK_HOSTS:
            raise ValueError(
                f"the core listens on {self.grpc_host} with the built-in join token; "
                "set GPUCLOUD_JOIN_TOKEN (or --join-token) to a secret of your own"
            )
        if len(self.join_token) < 16:
            raise ValueError("the join token must be at least 16 characters")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError(
                "TLS needs both a certificate and its private key: "
                "set --tls-cert and --tls-key (GPUCLOUD_TLS_CERT, GPUCLOUD_TLS_KEY) together"
            )
        for path in (self.tls_cert, self.tls_key):
            if path is not None and not path.is_file():
                raise ValueError(f"TLS file not found: {path}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of the core; each defaults to its GPUCLOUD_* variable."""
    parser.add_argument("--grpc-host")
    parser.add_argument("--grpc-port", type=int)
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--database-url")
    parser.add_argument("--redis-url")
    parser.add_argument("--join-token")
    parser.add_argument("--queue-capacity", type=int)
    parser.add_argument("--tls-cert", type=Path, help="certificate chain (PEM) to serve TLS")
    parser.add_argument("--tls-key", type=Path, help="private key (PEM) of --tls-cert")
    parser.add_argument(
        "--trusted-proxies", type=networks, help="gateway addresses/CIDRs, comma-separated"
    )


_ENV: dict[str, tuple[str, Callable[[str], object]]] = {
    "grpc_host": ("GPUCLOUD_GRPC_HOST", str),
    "grpc_port": ("GPUCLOUD_GRPC_PORT", int),
    "data_dir": ("GPUCLOUD_DATA_DIR", Path),
    "database_url": ("GPUCLOUD_DATABASE_URL", str),
    "redis_url": ("GPUCLOUD_REDIS_URL", str),
    "join_token": ("GPUCLOUD_JOIN_TOKEN", str),
    "ops_token": ("GPUCLOUD_OPS_TOKEN", str),
    "jwt_secret": ("GPUCLOUD_JWT_SECRET", str),
    "jwt_ttl_s": ("GPUCLOUD_JWT_TTL_S", int),
    "admin_email": ("GPUCLOUD_ADMIN_EMAIL", str),
    "admin_password": ("GPUCLOUD_ADMIN_PASSWORD", str),
    "default_requests_per_minute": ("GPUCLOUD_DEFAULT_RPM", int),
    "default_tokens_per_minute": ("GPUCLOUD_DEFAULT_TPM", int),
    "queue_capacity": ("GPUCLOUD_QUEUE_CAPACITY", int),
    "max_queue_wait_s": ("GPUCLOUD_MAX_QUEUE_WAIT_S", float),
    "heartbeat_interval_s": ("GPUCLOUD_HEARTBEAT_INTERVAL_S", float),
    "shutdown_grace_s": ("GPUCLOUD_SHUTDOWN_GRACE_S", float),
    "db_pool_size": ("GPUCLOUD_DB_POOL_SIZE", int),
    "db_pool_timeout_s": ("GPUCLOUD_DB_POOL_TIMEOUT_S", float),
    "db_statement_timeout_s": ("GPUCLOUD_DB_STATEMENT_TIMEOUT_S", float),
    "redis_namespace": ("GPUCLOUD_REDIS_NAMESPACE", str),
    "login_max_failures": ("GPUCLOUD_LOGIN_MAX_FAILURES", int),
    "login_max_failures_per_ip": ("GPUCLOUD_LOGIN_MAX_FAILURES_PER_IP", int),
    "login_lockout_s": ("GPUCLOUD_LOGIN_LOCKOUT_S", int),
    "tls_cert": ("GPUCLOUD_TLS_CERT", Path),
    "tls_key": ("GPUCLOUD_TLS_KEY", Path),
    "trusted_proxies": ("GPUCLOUD_TRUSTED_PROXIES", networks),
}


def from_sources(args: argparse.Namespace | None, env: Mapping[str, str]) -> CoreSettings:
    """Flags win over env, env over defaults."""
    values: dict[str, object] = {}
    for name, (var, kind) in _ENV.items():
        if var in env and env[var] != "":
            values[name] = kind(env[var])
        flag = getattr(args, name, None) if args is not None else None
        if flag is not None:
            values[name] = flag
    return CoreSettings(**values)  # type: ignore[arg-type]


def parse(argv: Sequence[str], env: Mapping[str, str] | None = None) -> CoreSettings:
    parser = argparse.ArgumentParser(prog="gpucloud server", description="Run the gpucloud core.")
    add_arguments(parser)
    return from_sources(parser.parse_args(list(argv)), os.environ if env is None else env)
