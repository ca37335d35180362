"""One storage handle over SQLite or PostgreSQL: connections, error mapping, migrations."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gpucloud_server.config import CoreSettings
from gpucloud_server.errors import Unavailable
from gpucloud_server.identity.storage.migrate import upgrade_to_head
from gpucloud_server.identity.storage.postgres import PoolSettings, postgres_engine
from gpucloud_server.identity.storage.sqlite import sqlite_engine, sqlite_url

log = logging.getLogger(__name__)

SQLITE_FILE = "gpucloud.db"

# SQLSTATE classes and codes that mean "try again later", not "your query is wrong".
_TRANSIENT_SQLSTATE_PREFIXES = ("08", "53", "57")

_TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    sa_exc.TimeoutError,  # the pool had no free connection within pool_timeout
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    OSError,
    TimeoutError,
)


def _is_transient(error: BaseException) -> bool:
    if isinstance(error, sa_exc.IntegrityError):
        return False
    if isinstance(error, _TRANSIENT_ERRORS):
        return True
    if isinstance(error, sa_exc.DBAPIError):
        if error.connection_invalidated:
            return True
        state = getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None)
        return isinstance(state, str) and state.startswith(_TRANSIENT_SQLSTATE_PREFIXES)
    return False


class Database:
    """The engine plus the two ways in: `read()` and `write()` (one transaction)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self.engine.connect() as conn:
                yield conn
        except Exception as error:
            _raise_unavailable_if_transient(error)
            raise

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self.engine.begin() as conn:
                yield conn
        except Exception as error:
            _raise_unavailable_if_transient(error)
            raise

    def insert_ignore(self, table: sa.Table, key: str) -> sa.Insert:
        """INSERT … ON CONFLICT (key) DO NOTHING, in this database's dialect."""
        if self.dialect == "postgresql":
            return postgresql.insert(table).on_conflict_do_nothing(index_elements=[key])
        if self.dialect == "sqlite":
            return sqlite.insert(table).on_conflict_do_nothing(index_elements=[key])
        raise ValueError(f"unsupported database dialect: {self.dialect}")

    async def migrate(self) -> None:
        """Brings the schema to the newest migration; safe when several cores start at once."""
        async with self.write() as conn:
            if self.dialect == "postgresql":
                # One migrator at a time across processes; released at commit.
                await conn.execute(sa.text("SELECT pg_advisory_xact_lock(7419200051)"))
            await conn.run_sync(upgrade_to_head)

    async def close(self) -> None:
        await self.engine.dispose()


def _raise_unavailable_if_transient(error: Exception) -> None:
    if _is_transient(error):
        log.warning("database unavailable: %s", type(error).__name__)
        raise Unavailable("the database is unavailable; try again") from error


def open_database(settings: CoreSettings) -> Database:
    """The database the settings name; no connection is made until first use."""
    url = settings.database_url
    if url is None:
        data_dir = Path(settings.data_dir)
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        return Database(sqlite_engine(sqlite_url(data_dir / SQLITE_FILE)))
    if url.startswith("sqlite"):
        return Database(sqlite_engine(url))
    pool = PoolSettings(
        size=settings.db_pool_size,
        timeout_s=settings.db_pool_timeout_s,
        connect_timeout_s=settings.db_connect_timeout_s,
        statement_timeout_s=settings.db_statement_timeout_s,
    )
    return Database(postgres_engine(url, pool))
