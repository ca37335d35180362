"""Run by test_rate_limits in a separate process: hits one key's limit through Redis.

usage: python limiter_proc.py REDIS_URL NAMESPACE KEY_ID RPM ATTEMPTS
Prints "ready", waits for a line on stdin, then prints the number of admitted requests.
"""

from __future__ import annotations

import asyncio
import sys

from limits.aio.storage import RedisStorage
from redis.asyncio import Redis

from gpucloud_server.errors import ResourceExhausted
from gpucloud_server.identity.limits import KeyRateLimiter
from gpucloud_server.principal import KeyPrincipal


async def main(url: str, namespace: str, key_id: str, rpm: int, attempts: int) -> int:
    redis = Redis.from_url(url)
    storage = RedisStorage(
        "async+" + url,
        wrap_exceptions=True,
        implementation="redispy",
        key_prefix=f"{namespace}:limits",
        connection_pool=redis.connection_pool,
    )
    limiter = KeyRateLimiter(storage, namespace)
    key = KeyPrincipal(key_id, "user", "k", 5, frozenset(), rpm, 0)
    await redis.ping()
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)  # the parent starts both at once
    admitted = 0
    for _ in range(attempts):
        try:
            await limiter.admit(key)
            admitted += 1
        except ResourceExhausted:
            pass
    await redis.aclose()
    return admitted


if __name__ == "__main__":
    url, namespace, key_id, rpm, attempts = sys.argv[1:6]
    print(asyncio.run(main(url, namespace, key_id, int(rpm), int(attempts))), flush=True)
