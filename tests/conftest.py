"""Fixtures shared by every test package: PostgreSQL and Redis for tests marked `services`.

Both skip with the reason when the service is unreachable, and fail instead when
GPUCLOUD_REQUIRE_SERVICES=1 (CI sets it), so a missing service never passes silently.
Override the addresses with GPUCLOUD_TEST_POSTGRES_URL / GPUCLOUD_TEST_REDIS_URL.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest

T = TypeVar("T")

REQUIRE_SERVICES = os.environ.get("GPUCLOUD_REQUIRE_SERVICES") == "1"
POSTGRES_ADMIN_URL = os.environ.get(
    "GPUCLOUD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("GPUCLOUD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def service_missing(what: str, error: BaseException) -> None:
    reason = f"{what} unreachable: {type(error).__name__}: {error}"
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (GPUCLOUD_REQUIRE_SERVICES=1)", pytrace=False)
    pytest.skip(reason)


def run_in_thread(coro: Coroutine[Any, Any, T]) -> T:
    """Runs a coroutine on a private loop in another thread, so session fixtures
    never touch the event loop pytest-asyncio gives each test."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as error:
            box["error"] = error

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


def _with_database(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


async def _admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=3)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def create_postgres_database() -> str:
    """A fresh, empty database; returns its SQLAlchemy URL (asyncpg driver)."""
    name = f"gpucloud_test_{secrets.token_hex(6)}"
    run_in_thread(_admin(f'CREATE DATABASE "{name}"'))
    return _with_database(POSTGRES_ADMIN_URL, name).replace(
        "postgresql://", "postgresql+asyncpg://", 1
    )


def drop_postgres_database(url: str) -> None:
    name = url.rpartition("/")[2]
    run_in_thread(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A database of its own for this test session, dropped at the end."""
    try:
        url = create_postgres_database()
    except Exception as error:  # refused, timed out, or asyncpg's own (e.g. authentication)
        service_missing(f"PostgreSQL at {POSTGRES_ADMIN_URL}", error)
    yield url
    drop_postgres_database(url)


@pytest.fixture(scope="session")
def redis_url() -> str:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except (redis.RedisError, OSError) as error:
        service_missing(f"Redis at {REDIS_URL}", error)
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture
def fresh_postgres_url(postgres_url: str) -> Iterator[str]:
    """An empty database for one test (migrations from scratch), dropped after it."""
    url = create_postgres_database()
    yield url
    drop_postgres_database(url)
