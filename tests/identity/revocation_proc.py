"""Run by test_revocation in a separate core process sharing the database and Redis.

usage: python revocation_proc.py DATA_DIR DATABASE_URL|- REDIS_URL NAMESPACE
Reads the key secret from stdin, authenticates it (so it is cached), prints
"cached", then authenticates every 10 ms and prints the wall time at which the
key was first refused (or "timeout" after 10 s).
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from argon2 import PasswordHasher

from gpucloud_server.config import CoreSettings
from gpucloud_server.errors import Unauthenticated
from gpucloud_server.identity.assembly import Identity


async def main(data_dir: str, database_url: str, redis_url: str, namespace: str) -> None:
    settings = CoreSettings(
        data_dir=Path(data_dir),
        database_url=None if database_url == "-" else database_url,
        redis_url=redis_url,
        redis_namespace=namespace,
    )
    secret = sys.stdin.readline().strip()
    hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    async with Identity(settings, password_hasher=hasher) as identity:
        await identity.keys.authenticate(secret)
        print("cached", flush=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                await identity.keys.authenticate(secret)
            except Unauthenticated:
                print(time.time(), flush=True)
                return
            await asyncio.sleep(0.01)
        print("timeout", flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
