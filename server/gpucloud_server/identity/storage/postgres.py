"""PostgreSQL engine: a bounded pool and timeouts, so overload fails fast instead of hanging."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


@dataclass(frozen=True, slots=True)
class PoolSettings:
    size: int = 10
    timeout_s: float = 5.0
    connect_timeout_s: float = 5.0
    statement_timeout_s: float = 15.0


def asyncpg_url(url: str) -> str:
    """Accepts postgres://, postgresql:// or postgresql+asyncpg:// and names the asyncpg driver."""
    scheme, sep, rest = url.partition("://")
    if scheme in {"postgres", "postgresql", "postgresql+asyncpg"}:
        return f"postgresql+asyncpg{sep}{rest}"
    raise ValueError(f"not a PostgreSQL URL: {scheme}://…")


def postgres_engine(url: str, pool: PoolSettings) -> AsyncEngine:
    statement_timeout_ms = int(pool.statement_timeout_s * 1000)
    return create_async_engine(
        asyncpg_url(url),
        pool_size=pool.size,
        max_overflow=0,
        pool_timeout=pool.timeout_s,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={
            "timeout": pool.connect_timeout_s,
            # Client-side bound as well, in case the server never answers.
            "command_timeout": pool.statement_timeout_s + 5,
            "server_settings": {
                "statement_timeout": str(statement_timeout_ms),
                "application_name": "gpucloud",
            },
        },
    )
