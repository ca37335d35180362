"""Identity fixtures: the same tests on SQLite and PostgreSQL, a fast password hasher."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from identity_helpers import FAST_HASHER, admin_of, make_settings, new_member

from gpucloud_server.config import CoreSettings
from gpucloud_server.identity.assembly import Identity
from gpucloud_server.identity.storage import Database, open_database
from gpucloud_server.identity.storage.tables import api_keys, usage, users
from gpucloud_server.principal import UserPrincipal

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.services),
]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def _empty_tables(url: str) -> None:
    db = open_database(CoreSettings(database_url=url))
    try:
        await db.migrate()
        async with db.write() as conn:
            for table in (usage, api_keys, users):
                await conn.execute(sa.delete(table))
    finally:
        await db.close()


@pytest.fixture
async def database_url(backend: str, request: pytest.FixtureRequest) -> str | None:
    """None (SQLite in tmp data_dir) or this session's PostgreSQL database, emptied."""
    if backend == "sqlite":
        return None
    url: str = request.getfixturevalue("postgres_url")
    await _empty_tables(url)
    return url


@pytest.fixture
def settings(tmp_path: Path, database_url: str | None) -> CoreSettings:
    return make_settings(tmp_path, database_url)


@pytest.fixture
async def identity(settings: CoreSettings) -> AsyncIterator[Identity]:
    ident = Identity(settings, password_hasher=FAST_HASHER)
    await ident.start()
    try:
        yield ident
    finally:
        await ident.close()


@pytest.fixture
async def database(identity: Identity) -> Database:
    return identity.database


@pytest.fixture
async def admin(identity: Identity) -> UserPrincipal:
    return await admin_of(identity)


@pytest.fixture
async def member(identity: Identity) -> UserPrincipal:
    return await new_member(identity)
