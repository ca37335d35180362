"""Run by test_revocation in a separate core process sharing the database and Redis.

usage: python revocation_proc.py DATA_DIR DATABASE_URL|- REDIS_URL NAMESPACE
Reads the key secret from stdin, authenticates it (so it is cached, by a cache whose
clock stands still: only the revocation feed can drop it), prints "cached", waits
for the revoke message, authenticates once more and prints "refused" or "accepted"
(or "timeout" when no message came within 20 s).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path

from argon2 import PasswordHasher

from gpucloud_server.config import CoreSettings
from gpucloud_server.errors import Unauthenticated
from gpucloud_server.identity.assembly import Identity

DEADLINE_S = 20.0  # only stops a hung run; the message normally takes milliseconds


async def _until(predicate: Callable[[], object]) -> bool:
    deadline = asyncio.get_running_loop().time() + DEADLINE_S
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def main(data_dir: str, database_url: str, redis_url: str, namespace: str) -> None:
    settings = CoreSettings(
        data_dir=Path(data_dir),
        database_url=None if database_url == "-" else database_url,
        redis_url=redis_url,
        redis_namespace=namespace,
    )
    secret = sys.stdin.readline().strip()
    hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    # The key cache's clock stands still: only the feed can drop a cached key.
    async with Identity(settings, password_hasher=hasher, monotonic=lambda: 0.0) as identity:
        cache = identity.key_cache
        if not await _until(lambda: cache.enabled):  # subscribed to the feed
            print("timeout", flush=True)
            return
        await identity.keys.authenticate(secret)
        seen = cache.generation
        print("cached", flush=True)
        if not await _until(lambda: cache.generation > seen):
            print("timeout", flush=True)
            return
        try:
            await identity.keys.authenticate(secret)
        except Unauthenticated:
            print("refused", flush=True)
        else:
            print("accepted", flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
