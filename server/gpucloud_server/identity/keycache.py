"""The in-process cache of API keys by secret hash, so authenticating costs no DB round trip."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from gpucloud_server.principal import KeyPrincipal


@dataclass(frozen=True, slots=True)
class CachedKey:
    """What the database said about a hash: a principal, or None for no such key."""

    principal: KeyPrincipal | None
    expires_at: float | None  # unix seconds; None = never
    revoked: bool
    loaded_at: float  # monotonic seconds


class KeyCache:
    """Entries live `ttl_s` (unknown hashes `negative_ttl_s`), dropped at once on revoke.

    `generation` moves on every invalidation: a lookup that began before a revoke
    must not put the pre-revoke row back (see `put`). While `enabled` is False
    (the revocation feed is down) every lookup goes to the database.
    """

    def __init__(
        self,
        ttl_s: float,
        *,
        negative_ttl_s: float = 1.0,  # capped at ttl_s
        max_entries: int = 100_000,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl_s = ttl_s
        self._negative_ttl_s = min(negative_ttl_s, ttl_s)
        self._max_entries = max_entries
        self._monotonic = monotonic
        self._entries: dict[str, CachedKey] = {}
        self.generation = 0
        self.enabled = True

    def now(self) -> float:
        return self._monotonic()

    def get(self, secret_hash: str) -> CachedKey | None:
        if not self.enabled:
            return None
        entry = self._entries.get(secret_hash)
        if entry is None:
            return None
        ttl = self._ttl_s if entry.principal is not None else self._negative_ttl_s
        if self._monotonic() - entry.loaded_at > ttl:
            del self._entries[secret_hash]
            return None
        return entry

    def put(self, secret_hash: str, entry: CachedKey, generation: int) -> None:
        """Stores `entry` unless something was invalidated since `generation` was read."""
        if not self.enabled or generation != self.generation:
            return
        if len(self._entries) >= self._max_entries:
            self._evict()
        self._entries[secret_hash] = entry

    def invalidate(self, secret_hash: str) -> None:
        self.generation += 1
        self._entries.pop(secret_hash, None)

    def clear(self) -> None:
        self.generation += 1
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def _evict(self) -> None:
        now = self._monotonic()
        for key in [k for k, e in self._entries.items() if now - e.loaded_at > self._ttl_s]:
            del self._entries[key]
        if len(self._entries) >= self._max_entries:
            self._entries.clear()
