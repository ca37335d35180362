"""The core's settings: one frozen object, read once from flags and GPUCLOUD_* env in main()."""

from __future__ import annotations

import argparse
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from gpucloud_common.settings import add_arguments, load, new_parser, option

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

    grpc_host: str = option(
        "127.0.0.1", flag="--grpc-host", env="GPUCLOUD_GRPC_HOST", help="gRPC bind address"
    )
    grpc_port: int = option(
        50051, flag="--grpc-port", env="GPUCLOUD_GRPC_PORT", help="gRPC port (0: any free one)"
    )
    data_dir: Path = option(
        Path(".data"),
        flag="--data-dir",
        env="GPUCLOUD_DATA_DIR",
        help="directory of the SQLite file and the generated JWT secret",
    )
    database_url: str | None = option(
        None,
        flag="--database-url",
        env="GPUCLOUD_DATABASE_URL",
        help="SQLAlchemy URL, e.g. postgresql+asyncpg://user@host/db",
        default_help="SQLite in the data dir",
    )
    redis_url: str | None = option(
        None,
        flag="--redis-url",
        env="GPUCLOUD_REDIS_URL",
        help="redis://… for rate limits, login throttling and revocation shared by every core",
        default_help="in-process limits",
    )
    ops_token: str | None = option(
        None,
        env="GPUCLOUD_OPS_TOKEN",
        help="read-only credential of MonitorService (the gateway's /readyz and /metrics)",
    )
    # The built-in token is only accepted on a loopback address (see check()).
    join_token: str = option(
        DEV_JOIN_TOKEN,
        flag="--join-token",
        env="GPUCLOUD_JOIN_TOKEN",
        help="secret workers present to join, at least 16 characters; "
        "the built-in one only while the core listens on loopback",
    )
    jwt_secret: str | None = option(
        None,
        env="GPUCLOUD_JWT_SECRET",
        help="HS256 signing secret (>= 32 characters); the same on every core",
        default_help="generated once into the data dir",
    )
    jwt_ttl_s: int = option(
        12 * 3600, env="GPUCLOUD_JWT_TTL_S", help="dashboard session lifetime, seconds"
    )
    admin_email: str = option(
        "admin@gpucloud.local", env="GPUCLOUD_ADMIN_EMAIL", help="the admin created on first start"
    )
    admin_password: str = option(
        "admin123",  # documented default, flagged until changed
        env="GPUCLOUD_ADMIN_PASSWORD",
        help="that admin's first password",
    )
    default_requests_per_minute: int = option(
        60,
        env="GPUCLOUD_DEFAULT_RPM",
        help="requests a minute of keys without their own (0: no limit)",
    )
    default_tokens_per_minute: int = option(
        100_000,
        env="GPUCLOUD_DEFAULT_TPM",
        help="tokens a minute of keys without their own (0: no limit)",
    )
    queue_capacity: int = option(
        1000,
        flag="--queue-capacity",
        env="GPUCLOUD_QUEUE_CAPACITY",
        help="tasks that may wait (one key: a quarter of them)",
    )
    max_queue_wait_s: float = option(
        300.0, env="GPUCLOUD_MAX_QUEUE_WAIT_S", help="a task waiting longer fails with 503"
    )
    heartbeat_interval_s: float = option(
        5.0,
        env="GPUCLOUD_HEARTBEAT_INTERVAL_S",
        help="expected worker heartbeat interval, seconds (3 missed: offline)",
    )
    missed_heartbeats: int = 3
    prefix_aware_dispatch: bool = option(
        True,
        env="GPUCLOUD_PREFIX_AWARE_DISPATCH",
        help="send a prompt to the worker recently sent its leading text (its prefix cache "
        "likely holds it) unless that worker is much busier; off: least-loaded only",
    )
    ageing_step_s: float = 10.0
    max_attempts: int = 3
    shutdown_grace_s: float = option(
        10.0, env="GPUCLOUD_SHUTDOWN_GRACE_S", help="seconds running tasks get on shutdown"
    )
    usage_flush_interval_s: float = 1.0
    # PostgreSQL pool: bounded, and an exhausted pool fails fast as UNAVAILABLE.
    db_pool_size: int = option(10, env="GPUCLOUD_DB_POOL_SIZE", help="PostgreSQL connections")
    db_pool_timeout_s: float = option(
        5.0, env="GPUCLOUD_DB_POOL_TIMEOUT_S", help="wait for a free connection, seconds"
    )
    db_connect_timeout_s: float = 5.0
    db_statement_timeout_s: float = option(
        15.0, env="GPUCLOUD_DB_STATEMENT_TIMEOUT_S", help="PostgreSQL statement timeout, seconds"
    )
    # Prefix of every Redis key and channel, so several clusters can share one Redis.
    redis_namespace: str = option(
        "gpucloud", env="GPUCLOUD_REDIS_NAMESPACE", help="prefix of Redis keys and channels"
    )
    # Login throttling: failures allowed per account+IP and per IP within the window.
    login_max_failures: int = option(
        5, env="GPUCLOUD_LOGIN_MAX_FAILURES", help="failed logins per account and address"
    )
    login_max_failures_per_ip: int = option(
        50, env="GPUCLOUD_LOGIN_MAX_FAILURES_PER_IP", help="failed logins per address"
    )
    login_lockout_s: int = option(
        900, env="GPUCLOUD_LOGIN_LOCKOUT_S", help="window of those failures, seconds"
    )
    trusted_proxies: tuple[Network, ...] = option(
        LOOPBACK_NETWORKS,
        flag="--trusted-proxies",
        env="GPUCLOUD_TRUSTED_PROXIES",
        parse=networks,
        help="gateways (addresses, CIDRs, comma-separated) whose x-forwarded-for names the client",
    )
    tls_cert: Path | None = option(
        None,
        flag="--tls-cert",
        env="GPUCLOUD_TLS_CERT",
        parse=Path,
        help="certificate chain (PEM) to serve gRPC over TLS; with --tls-key",
        default_help="plaintext",
    )
    tls_key: Path | None = option(
        None,
        flag="--tls-key",
        env="GPUCLOUD_TLS_KEY",
        parse=Path,
        help="private key (PEM) of --tls-cert",
    )

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


def parser() -> argparse.ArgumentParser:
    """`gpucloud server`'s command line: every option of the core."""
    cli = new_parser("gpucloud server", "Run the gpucloud core: scheduler, identity, usage.")
    add_arguments(cli, CoreSettings)
    return cli


def from_sources(args: argparse.Namespace | None, env: Mapping[str, str]) -> CoreSettings:
    """Flags win over env, env over defaults; raises SettingsError for a bad value."""
    return load(CoreSettings, args, env)


def parse(argv: Sequence[str], env: Mapping[str, str]) -> CoreSettings:
    """Checked settings from a command line and an environment; raises ValueError."""
    settings = from_sources(parser().parse_args(list(argv)), env)
    settings.check()
    return settings
