"""Key revocations across core processes over Redis pub/sub.

Every core subscribes to one channel; a revoke publishes the key's hash and each
subscriber drops it from its cache, typically within milliseconds. While the
subscription is down, the cache is disabled (every lookup hits the database) and
it is cleared on reconnect, since messages may have been missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from gpucloud_server.identity.keycache import KeyCache

log = logging.getLogger(__name__)

PING_INTERVAL_S = 2.0
DEAD_AFTER_S = 6.0  # no pong for this long: the connection is presumed dead
RECONNECT_DELAY_S = 0.5


class RevocationFeed:
    def __init__(self, redis: Redis, channel: str, cache: KeyCache) -> None:
        self._redis = redis
        self._channel = channel
        self._cache = cache
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    async def start(self, timeout_s: float = 5.0) -> None:
        """Subscribes; returns once subscribed (or after `timeout_s`, degraded)."""
        self._cache.enabled = False
        self._task = asyncio.create_task(self._run(), name="key-revocation-feed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), timeout_s)

    async def publish(self, secret_hash: str) -> None:
        try:
            await self._redis.publish(self._channel, secret_hash)
        except RedisError as error:
            # The revoke itself is committed; peers with a healthy feed keep the
            # key cached until their TTL ends.
            log.error("could not broadcast a key revocation: %s", type(error).__name__)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(self._channel)
                    self._cache.clear()
                    self._cache.enabled = True
                    self._subscribed.set()
                    await self._listen(pubsub)
            except (RedisError, OSError, TimeoutError) as error:
                log.warning("key revocation feed lost (%s); reconnecting", type(error).__name__)
            except Exception:
                log.exception("key revocation feed failed; reconnecting")
            finally:
                self._cache.enabled = False
                self._cache.clear()
            await asyncio.sleep(RECONNECT_DELAY_S)

    async def _listen(self, pubsub: PubSub) -> None:
        last_pong = last_ping = time.monotonic()
        while True:
            message: dict[str, Any] | None = await pubsub.get_message(timeout=0.5)
            now = time.monotonic()
            if message is not None:
                if message["type"] == "message":
                    data = message["data"]
                    self._cache.invalidate(data.decode() if isinstance(data, bytes) else data)
                elif message["type"] == "pong":
                    last_pong = now
            if now - last_ping >= PING_INTERVAL_S:
                await pubsub.ping()
                last_ping = now
            if now - last_pong > DEAD_AFTER_S:
                raise TimeoutError("no pong from Redis")
