"""Storage on SQLite and PostgreSQL: migrations, settings, idempotent inserts, failing fast."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from identity_helpers import make_settings
from sqlalchemy import exc as sa_exc

from gpucloud_server.config import CoreSettings
from gpucloud_server.errors import Unavailable
from gpucloud_server.identity.storage import Database, open_database
from gpucloud_server.identity.storage.migrate import MIGRATIONS_DIR
from gpucloud_server.identity.storage.postgres import asyncpg_url
from gpucloud_server.identity.storage.tables import metadata, usage

HUNG_AFTER_S = 10.0  # only turns a hang into a failure; nothing here should come near it


def _usage_row(task_id: str) -> dict[str, object]:
    return {
        "task_id": task_id,
        "key_id": "k",
        "user_id": "u",
        "model": "m",
        "worker_id": "w",
        "gpu": "g",
        "prompt_tokens": 1,
        "completion_tokens": 2,
        "queue_wait_ms": 0,
        "ttft_ms": None,
        "total_ms": 3,
        "outcome": "ok",
        "error_code": "",
        "created_ms": 1,
        "finished_ms": 2,
    }


async def test_migrations_are_shipped_in_the_package() -> None:
    assert (MIGRATIONS_DIR / "env.py").is_file()
    assert list((MIGRATIONS_DIR / "versions").glob("0001_*.py"))
    assert not (MIGRATIONS_DIR.parent.parent / "alembic.ini").exists()


async def test_migrated_schema_matches_the_tables(database: Database) -> None:
    await database.migrate()  # a second run is a no-op
    async with database.read() as conn:
        diff = await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
        )
        version = (await conn.execute(sa.text("SELECT version_num FROM alembic_version"))).all()
    assert diff == []
    assert version == [("0001",)]


async def test_insert_ignore_keeps_the_first_row(database: Database) -> None:
    statement = database.insert_ignore(usage, "task_id")
    async with database.write() as conn:
        await conn.execute(statement, [_usage_row("t1"), _usage_row("t2")])
    second = dict(_usage_row("t1"), prompt_tokens=99)
    async with database.write() as conn:
        await conn.execute(statement, [second, _usage_row("t3")])
    async with database.read() as conn:
        rows = (await conn.execute(sa.select(usage.c.task_id, usage.c.prompt_tokens))).all()
    assert sorted(rows) == [("t1", 1), ("t2", 1), ("t3", 1)]


async def _insert_then_fail(database: Database) -> None:
    async with database.write() as conn:
        await conn.execute(usage.insert().values(_usage_row("rolled-back")))
        raise RuntimeError("boom")


async def test_a_failed_write_rolls_back(database: Database) -> None:
    with pytest.raises(RuntimeError):
        await _insert_then_fail(database)
    async with database.read() as conn:
        count = await conn.scalar(sa.select(sa.func.count()).select_from(usage))
    assert count == 0


async def test_sqlite_is_set_up_for_a_server(tmp_path: Path) -> None:
    db = open_database(CoreSettings(data_dir=tmp_path))
    try:
        async with db.read() as conn:
            pragmas = {
                name: (await conn.execute(sa.text(f"PRAGMA {name}"))).scalar()
                for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
            }
    finally:
        await db.close()
    assert (tmp_path / "gpucloud.db").exists()
    # synchronous: 1 = NORMAL
    assert pragmas == {
        "journal_mode": "wal",
        "synchronous": 1,
        "foreign_keys": 1,
        "busy_timeout": 5000,
    }


def test_postgres_urls_name_the_asyncpg_driver() -> None:
    assert asyncpg_url("postgres://u@h/d") == "postgresql+asyncpg://u@h/d"
    assert asyncpg_url("postgresql://u@h/d") == "postgresql+asyncpg://u@h/d"
    assert asyncpg_url("postgresql+asyncpg://u@h/d") == "postgresql+asyncpg://u@h/d"
    with pytest.raises(ValueError, match="not a PostgreSQL URL"):
        asyncpg_url("mysql://u@h/d")


@pytest.mark.services
async def test_an_exhausted_postgres_pool_fails_fast_as_unavailable(
    postgres_url: str, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, postgres_url, db_pool_size=1, db_pool_timeout_s=0.3)
    db = open_database(settings)
    pool = db.engine.pool  # fails fast: it waits the configured 0.3 s, not SQLAlchemy's 30 s
    assert isinstance(pool, sa.pool.QueuePool) and pool.timeout() == 0.3
    try:
        async with db.read() as held:
            await held.execute(sa.text("SELECT 1"))
            with pytest.raises(Unavailable) as refused:
                async with asyncio.timeout(HUNG_AFTER_S), db.read() as conn:
                    await conn.execute(sa.text("SELECT 1"))
            assert isinstance(refused.value.__cause__, sa_exc.TimeoutError)  # the pool's wait
        async with db.read() as conn:  # and it recovers once a connection is free
            assert (await conn.execute(sa.text("SELECT 1"))).scalar() == 1
    finally:
        await db.close()


@pytest.mark.services
async def test_a_slow_postgres_statement_is_cut_off_as_unavailable(
    postgres_url: str, tmp_path: Path
) -> None:
    db = open_database(make_settings(tmp_path, postgres_url, db_statement_timeout_s=0.2))
    try:
        async with db.read() as conn:
            assert (await conn.scalar(sa.text("SHOW statement_timeout"))) == "200ms"
        with pytest.raises(Unavailable) as refused:
            async with db.read() as conn:
                await conn.execute(sa.text("SELECT pg_sleep(5)"))
        # Cut off by the server's statement_timeout (57014 query_canceled), not by the
        # client-side backstop; uncut, pg_sleep(5) would return normally.
        cause = refused.value.__cause__
        assert isinstance(cause, sa_exc.DBAPIError)
        assert getattr(cause.orig, "sqlstate", None) == "57014"
        assert "statement timeout" in str(cause.orig)
    finally:
        await db.close()


async def test_an_unreachable_postgres_fails_fast_as_unavailable(tmp_path: Path) -> None:
    url = "postgresql://postgres@127.0.0.1:1/nothing"  # nothing listens on port 1
    db = open_database(make_settings(tmp_path, url, db_connect_timeout_s=1.0))
    try:
        with pytest.raises(Unavailable):
            async with db.read() as conn:
                await conn.execute(sa.text("SELECT 1"))
    finally:
        await db.close()


@pytest.mark.services
async def test_cores_starting_together_migrate_once(
    fresh_postgres_url: str, tmp_path: Path
) -> None:
    url = fresh_postgres_url
    dbs = [open_database(make_settings(tmp_path, url)) for _ in range(3)]
    try:
        await asyncio.gather(*(db.migrate() for db in dbs))
        async with dbs[0].read() as conn:
            version = (await conn.execute(sa.text("SELECT version_num FROM alembic_version"))).all()
        assert version == [("0001",)]
    finally:
        for db in dbs:
            await db.close()
