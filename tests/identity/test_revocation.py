"""Revocation across core processes over Redis pub/sub: refused everywhere within 1 s."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from identity_helpers import FAST_HASHER, make_settings, new_member
from redis.asyncio import Redis

from gpucloud_server.config import CoreSettings
from gpucloud_server.errors import Unauthenticated
from gpucloud_server.identity.assembly import Identity
from gpucloud_server.identity.keycache import KeyCache
from gpucloud_server.identity.keys import ApiKeys
from gpucloud_server.identity.keyspec import KeyDefaults, KeySpec
from gpucloud_server.identity.revocation import RevocationFeed

HERE = Path(__file__).parent
pytestmark = pytest.mark.services


@pytest.fixture
def settings(tmp_path: Path, database_url: str | None, redis_url: str) -> CoreSettings:
    return make_settings(tmp_path, database_url, redis_url=redis_url)


@pytest.fixture
async def peer(settings: CoreSettings) -> AsyncIterator[Identity]:
    """A second core on the same database and Redis."""
    async with Identity(settings, password_hasher=FAST_HASHER) as other:
        yield other


async def _refused_within(identity: Identity, secret: str, limit_s: float) -> float:
    started = time.monotonic()
    while True:
        try:
            await identity.keys.authenticate(secret)
        except Unauthenticated:
            return time.monotonic() - started
        assert time.monotonic() - started < limit_s, "still accepted"
        await asyncio.sleep(0.005)


async def test_a_revoke_reaches_another_core_within_a_second(
    identity: Identity, peer: Identity
) -> None:
    owner = await new_member(identity)
    created = await identity.keys.create(owner, KeySpec(name="k"))
    for _ in range(3):
        await peer.keys.authenticate(created.secret)  # cached for 30 s over there
    await identity.keys.revoke(owner, created.key.id)
    assert await _refused_within(peer, created.secret, 1.0) < 1.0


@pytest.mark.slow
async def test_a_revoke_reaches_another_process_within_a_second(
    identity: Identity, settings: CoreSettings
) -> None:
    owner = await new_member(identity)
    created = await identity.keys.create(owner, KeySpec(name="k"))
    assert settings.redis_url is not None
    args = [
        str(settings.data_dir),
        settings.database_url or "-",
        settings.redis_url,
        settings.redis_namespace,
    ]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(HERE / "revocation_proc.py"),
        *args,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    try:
        proc.stdin.write(created.secret.encode() + b"\n")
        await proc.stdin.drain()
        assert (await asyncio.wait_for(proc.stdout.readline(), 30)).strip() == b"cached"
        revoked_at = time.time()
        await identity.keys.revoke(owner, created.key.id)
        line = (await asyncio.wait_for(proc.stdout.readline(), 15)).strip()
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
    assert line != b"timeout"
    assert float(line) - revoked_at < 1.0


async def test_without_a_feed_every_lookup_goes_to_the_database(
    identity: Identity, tmp_path: Path
) -> None:
    """Redis unreachable: the cache is off, so a revoke elsewhere is still seen at once."""
    redis = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    cache = KeyCache(30.0)
    feed = RevocationFeed(redis, "nowhere", cache)
    await feed.start(timeout_s=0.3)
    try:
        assert not cache.enabled
        keys = ApiKeys(identity.database, cache, defaults=KeyDefaults(60, 1000), feed=feed)
        owner = await new_member(identity)
        created = await identity.keys.create(owner, KeySpec(name="k"))
        await keys.authenticate(created.secret)
        assert len(cache) == 0
        await identity.keys.revoke(owner, created.key.id)
        with pytest.raises(Unauthenticated):
            await keys.authenticate(created.secret)
    finally:
        await feed.close()
        await redis.aclose()
