"""Builds users, sessions, keys, limits and usage from CoreSettings and runs their lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

from argon2 import PasswordHasher
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from redis.asyncio import Redis

from gpucloud_server.config import CoreSettings
from gpucloud_server.identity.keycache import KeyCache
from gpucloud_server.identity.keys import ApiKeys
from gpucloud_server.identity.keyspec import KeyDefaults
from gpucloud_server.identity.limits import KeyRateLimiter
from gpucloud_server.identity.local_limits import LocalRateLimiter
from gpucloud_server.identity.login import LoginPolicy, Logins, LoginThrottle
from gpucloud_server.identity.metrics import UsageMetrics
from gpucloud_server.identity.revocation import RevocationFeed
from gpucloud_server.identity.sessions import Sessions, load_or_create_secret
from gpucloud_server.identity.storage import open_database
from gpucloud_server.identity.usage import UsageWriter
from gpucloud_server.identity.users import Users
from gpucloud_server.principal import RateLimiter

log = logging.getLogger(__name__)

# With Redis, revocations arrive over pub/sub and the TTL is only a backstop. With
# SQLite there is one core, whose own revocations clear its cache at once. Only
# cores sharing PostgreSQL without Redis rely on the TTL to see each other's
# revocations within a second.
CACHE_TTL_WITH_FEED_S = 30.0
CACHE_TTL_SINGLE_CORE_S = 30.0
CACHE_TTL_ALONE_S = 0.5


def _cache_ttl(settings: CoreSettings, has_feed: bool) -> float:
    if has_feed:
        return CACHE_TTL_WITH_FEED_S
    if settings.database_url is None or settings.database_url.startswith("sqlite"):
        return CACHE_TTL_SINGLE_CORE_S
    return CACHE_TTL_ALONE_S


def _redis(url: str) -> Redis:
    return Redis.from_url(
        url,
        socket_connect_timeout=2.0,
        socket_timeout=2.0,
        health_check_interval=10,
    )


def _limits_storage(redis: Redis | None, url: str | None, namespace: str) -> Storage:
    if redis is None or url is None:
        return MemoryStorage(wrap_exceptions=True)
    return RedisStorage(
        "async+" + url,
        wrap_exceptions=True,
        implementation="redispy",
        key_prefix=f"{namespace}:limits",
        connection_pool=redis.connection_pool,  # type: ignore[arg-type]
    )


@dataclass(frozen=True, slots=True)
class Accounts:
    """The parts behind AuthService."""

    logins: Logins
    sessions: Sessions
    users: Users
    keys: ApiKeys


class Identity:
    """Everything identity-related the core needs, from one settings object.

    `await start()` migrates the database, creates the default admin, loads the
    JWT secret and starts the background writers; `await close()` flushes usage
    and last-used times and releases connections. Also an async context manager.
    """

    def __init__(
        self,
        settings: CoreSettings,
        *,
        password_hasher: PasswordHasher | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        namespace = settings.redis_namespace
        self.database = open_database(settings)
        self._redis = _redis(settings.redis_url) if settings.redis_url else None
        self._limits_storage = _limits_storage(self._redis, settings.redis_url, namespace)
        ttl = _cache_ttl(settings, self._redis is not None)
        self.key_cache = KeyCache(ttl, monotonic=monotonic)
        self._feed = (
            RevocationFeed(self._redis, f"{namespace}:keys:revoked", self.key_cache)
            if self._redis
            else None
        )
        self.users = Users(self.database, password_hasher)
        defaults = KeyDefaults(
            settings.default_requests_per_minute, settings.default_tokens_per_minute
        )
        self.keys = ApiKeys(self.database, self.key_cache, defaults=defaults, feed=self._feed)
        # One core keeps limits in its own memory; with Redis, every core shares them.
        self.limiter: RateLimiter = (
            KeyRateLimiter(self._limits_storage, namespace) if self._redis else LocalRateLimiter()
        )
        self.usage = UsageWriter(self.database, settings.usage_flush_interval_s)
        self.reports = UsageMetrics(self.database)
        policy = LoginPolicy(
            settings.login_max_failures,
            settings.login_max_failures_per_ip,
            settings.login_lockout_s,
        )
        self._throttle = LoginThrottle(self._limits_storage, policy, namespace)
        self._sessions: Sessions | None = None
        self._logins: Logins | None = None

    @property
    def sessions(self) -> Sessions:
        """The SessionAuthority; available after start()."""
        if self._sessions is None:
            raise RuntimeError("Identity.start() has not run")
        return self._sessions

    @property
    def logins(self) -> Logins:
        if self._logins is None:
            raise RuntimeError("Identity.start() has not run")
        return self._logins

    @property
    def accounts(self) -> Accounts:
        """What AuthService serves: sign-in, users and their keys; after start()."""
        return Accounts(self.logins, self.sessions, self.users, self.keys)

    async def start(self) -> None:
        await self.database.migrate()
        await self.users.ensure_admin(self.settings.admin_email, self.settings.admin_password)
        secret = self.settings.jwt_secret
        if secret is None:
            secret = await asyncio.to_thread(load_or_create_secret, self.settings.data_dir)
        self._sessions = Sessions(secret, ttl_s=self.settings.jwt_ttl_s)
        # So that sessions a password change ended before this start stay ended.
        await self._sessions.preload(self.users.list_all)
        self._logins = Logins(self.users, self._sessions, self._throttle)
        if self._feed is not None:
            await self._feed.start()
        await self.keys.start()
        await self.usage.start()

    async def close(self) -> None:
        """Flushes what is pending, then releases connections; safe to call twice."""
        for step in (self.usage.close, self.keys.close):
            try:
                await step()
            except Exception:
                log.exception("flush on close failed")
        if self._feed is not None:
            await self._feed.close()
        await self._close_limits_timer()
        if self._redis is not None:
            await self._redis.aclose()
        await self.database.close()

    async def _close_limits_timer(self) -> None:
        # MemoryStorage expires entries in a task of its own; do not leave it pending.
        timer = getattr(self._limits_storage, "timer", None)
        if isinstance(timer, asyncio.Task) and not timer.done():
            timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await timer

    async def __aenter__(self) -> Identity:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
