"""API keys: create (secret shown once), list, revoke, and authenticate through a cache."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from gpucloud_server.errors import FailedPrecondition, NotFound, Unauthenticated
from gpucloud_server.identity import keyformat
from gpucloud_server.identity.keycache import CachedKey, KeyCache
from gpucloud_server.identity.keyspec import KeyDefaults, KeySpec, validate_spec
from gpucloud_server.identity.revocation import RevocationFeed
from gpucloud_server.identity.storage import Database
from gpucloud_server.identity.storage.tables import api_keys, usage, users
from gpucloud_server.principal import KeyPrincipal, UserPrincipal

log = logging.getLogger(__name__)

MAX_ACTIVE_KEYS_PER_USER = 100
MAX_LISTED_KEYS = 1000
LAST_USED_FLUSH_S = 5.0


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key as lists show it: never the secret."""

    id: str
    name: str
    owner_id: str
    owner_email: str
    last4: str
    created_at: float
    last_used_at: float | None
    revoked_at: float | None
    expires_at: float | None
    allowed_models: tuple[str, ...]
    requests_per_minute: int
    tokens_per_minute: int
    priority: int
    requests: int = 0
    tokens: int = 0


@dataclass(frozen=True, slots=True)
class CreatedKey:
    key: ApiKey
    secret: str = field(repr=False)  # shown once, to the creator; never logged


def _seconds(ms: Any) -> float | None:
    return None if ms is None else int(ms) / 1000


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else int(seconds * 1000)


def _api_key(m: Any, owner_email: str, requests: int = 0, tokens: int = 0) -> ApiKey:
    return ApiKey(
        id=m["id"],
        name=m["name"],
        owner_id=m["user_id"],
        owner_email=owner_email,
        last4=m["last4"],
        created_at=int(m["created_ms"]) / 1000,
        last_used_at=_seconds(m["last_used_ms"]),
        revoked_at=_seconds(m["revoked_ms"]),
        expires_at=_seconds(m["expires_ms"]),
        allowed_models=tuple(m["allowed_models"] or ()),
        requests_per_minute=int(m["requests_per_minute"]),
        tokens_per_minute=int(m["tokens_per_minute"]),
        priority=int(m["priority"]),
        requests=requests,
        tokens=tokens,
    )


def _principal(m: Any) -> KeyPrincipal:
    return KeyPrincipal(
        key_id=m["id"],
        user_id=m["user_id"],
        name=m["name"],
        priority=int(m["priority"]),
        allowed_models=frozenset(m["allowed_models"] or ()),
        requests_per_minute=int(m["requests_per_minute"]),
        tokens_per_minute=int(m["tokens_per_minute"]),
    )


class ApiKeys:
    """Key management and the core's KeyAuthority."""

    def __init__(
        self,
        db: Database,
        cache: KeyCache,
        *,
        defaults: KeyDefaults,
        feed: RevocationFeed | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        self._cache = cache
        self._defaults = defaults
        self._feed = feed
        self._clock = clock
        self._touched: dict[str, int] = {}
        self._flusher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._flusher = asyncio.create_task(self._flush_loop(), name="key-last-used")

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        await self.flush_last_used()

    async def create(self, owner: UserPrincipal, spec: KeySpec) -> CreatedKey:
        """A key for `owner`, who is also the caller: members may not raise priority or
        limits above the server's defaults (keyspec's module doc has the rule)."""
        now = self._clock()
        clean = validate_spec(spec, self._defaults, now, is_admin=owner.is_admin)
        async with self._db.read() as conn:
            active = await conn.scalar(
                sa.select(sa.func.count())
                .select_from(api_keys)
                .where(api_keys.c.user_id == owner.user_id, api_keys.c.revoked_ms.is_(None))
            )
        if (active or 0) >= MAX_ACTIVE_KEYS_PER_USER:
            raise FailedPrecondition(
                f"at most {MAX_ACTIVE_KEYS_PER_USER} active keys per user; revoke one first"
            )
        secret = keyformat.generate_secret()
        row = {
            "id": uuid.uuid4().hex,
            "user_id": owner.user_id,
            "name": clean.name,
            "secret_hash": keyformat.hash_secret(secret),
            "last4": keyformat.last4(secret),
            "created_ms": _ms(now),
            "last_used_ms": None,
            "revoked_ms": None,
            "expires_ms": _ms(clean.expires_at),
            "allowed_models": list(clean.allowed_models),
            "requests_per_minute": clean.requests_per_minute,
            "tokens_per_minute": clean.tokens_per_minute,
            "priority": clean.priority,
        }
        async with self._db.write() as conn:
            await conn.execute(api_keys.insert().values(row))
        log.info("created API key %s for user %s", row["id"], owner.user_id)
        return CreatedKey(_api_key(row, owner.email), secret)

    async def list(self, viewer: UserPrincipal) -> list[ApiKey]:
        """The viewer's keys, newest first; admins see everyone's."""
        query = (
            sa.select(api_keys, users.c.email.label("owner_email"))
            .join(users, users.c.id == api_keys.c.user_id)
            .order_by(api_keys.c.created_ms.desc(), api_keys.c.id)
            .limit(MAX_LISTED_KEYS)
        )
        if not viewer.is_admin:
            query = query.where(api_keys.c.user_id == viewer.user_id)
        async with self._db.read() as conn:
            rows = [r._mapping for r in (await conn.execute(query)).all()]
            totals = await self._usage_totals(conn, [r["id"] for r in rows])
        return [_api_key(r, r["owner_email"], *totals.get(r["id"], (0, 0))) for r in rows]

    async def _usage_totals(self, conn: Any, key_ids: Sequence[str]) -> dict[str, tuple[int, int]]:
        if not key_ids:
            return {}
        tokens = sa.func.sum(usage.c.prompt_tokens + usage.c.completion_tokens)
        query = (
            sa.select(usage.c.key_id, sa.func.count(), tokens)
            .where(usage.c.key_id.in_(key_ids))
            .group_by(usage.c.key_id)
        )
        result = await conn.execute(query)
        return {row[0]: (int(row[1]), int(row[2] or 0)) for row in result.all()}

    async def revoke(self, viewer: UserPrincipal, key_id: str) -> ApiKey:
        """Revokes at once; another user's key reads as not found (ids are not secrets,
        but existence is not ours to confirm)."""
        query = (
            sa.select(api_keys, users.c.email.label("owner_email"))
            .join(users, users.c.id == api_keys.c.user_id)
            .where(api_keys.c.id == key_id)
        )
        async with self._db.write() as conn:
            row = (await conn.execute(query)).first()
            m = dict(row._mapping) if row is not None else {}
            if not m or (not viewer.is_admin and m["user_id"] != viewer.user_id):
                raise NotFound("no such API key")
            if m["revoked_ms"] is None:
                m["revoked_ms"] = _ms(self._clock())
                await conn.execute(
                    api_keys.update()
                    .where(api_keys.c.id == key_id, api_keys.c.revoked_ms.is_(None))
                    .values(revoked_ms=m["revoked_ms"])
                )
        self._cache.invalidate(m["secret_hash"])
        if self._feed is not None:
            await self._feed.publish(m["secret_hash"])
        log.info("revoked API key %s (by user %s)", key_id, viewer.user_id)
        return _api_key(m, m["owner_email"])

    async def authenticate(self, secret: str) -> KeyPrincipal:
        if not keyformat.is_well_formed(secret):
            raise Unauthenticated("invalid API key")
        secret_hash = keyformat.hash_secret(secret)
        entry = self._cache.get(secret_hash)
        if entry is None:
            generation = self._cache.generation
            entry = await self._load(secret_hash)
            self._cache.put(secret_hash, entry, generation)
        principal = self._check(entry)
        self._touched[principal.key_id] = int(self._clock() * 1000)
        return principal

    def _check(self, entry: CachedKey) -> KeyPrincipal:
        if entry.principal is None:
            raise Unauthenticated("invalid API key")
        if entry.revoked:
            raise Unauthenticated("this API key has been revoked")
        if entry.expires_at is not None and self._clock() >= entry.expires_at:
            raise Unauthenticated("this API key has expired")
        return entry.principal

    async def _load(self, secret_hash: str) -> CachedKey:
        query = api_keys.select().where(api_keys.c.secret_hash == secret_hash)
        async with self._db.read() as conn:
            row = (await conn.execute(query)).first()
        now = self._cache.now()
        if row is None:
            return CachedKey(None, None, False, now)
        m = row._mapping
        return CachedKey(_principal(m), _seconds(m["expires_ms"]), m["revoked_ms"] is not None, now)

    async def flush_last_used(self) -> None:
        """Writes last-used times gathered by authenticate(), off the hot path."""
        if not self._touched:
            return
        touched, self._touched = self._touched, {}
        statement = (
            api_keys.update()
            .where(
                api_keys.c.id == sa.bindparam("key_id"),
                sa.or_(
                    api_keys.c.last_used_ms.is_(None),
                    api_keys.c.last_used_ms < sa.bindparam("used_ms"),
                ),
            )
            .values(last_used_ms=sa.bindparam("used_ms"))
        )
        params = [{"key_id": k, "used_ms": ms} for k, ms in touched.items()]
        try:
            async with self._db.write() as conn:
                await conn.execute(statement, params)
        except Exception:
            for key_id, used_ms in touched.items():  # keep them for the next try
                self._touched[key_id] = max(used_ms, self._touched.get(key_id, 0))
            raise

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(LAST_USED_FLUSH_S)
            try:
                await self.flush_last_used()
            except Exception:
                log.exception("could not record API key last-used times")
