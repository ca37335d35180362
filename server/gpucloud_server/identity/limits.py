"""Per-key requests/min and tokens/min with the `limits` library (memory or Redis).

Requests use a moving window: exact, a 60/min key admits 60 in any 60 s and not
61, also across processes sharing Redis (the check-and-add is one Lua script).
Tokens use a fixed window because they are charged after a task ends, when they
have been spent whatever the limit: the charge always lands, and a key over its
budget is refused new requests until the window resets.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NoReturn

from limits import RateLimitItemPerMinute
from limits.aio.storage import Storage
from limits.aio.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter
from limits.errors import StorageError

from gpucloud_server.errors import ResourceExhausted, Unavailable
from gpucloud_server.principal import KeyPrincipal, LimitDecision, LimitWindow


class KeyRateLimiter:
    """Implements principal.RateLimiter."""

    def __init__(
        self, storage: Storage, namespace: str, clock: Callable[[], float] = time.time
    ) -> None:
        self._requests = MovingWindowRateLimiter(storage)
        self._tokens = FixedWindowRateLimiter(storage)
        self._namespace = namespace
        self._clock = clock  # must match the clock `limits` uses: wall time

    async def admit(self, key: KeyPrincipal) -> LimitDecision:
        try:
            return await self._admit(key)
        except StorageError as error:
            raise Unavailable("rate limiting is unavailable; try again") from error

    async def _admit(self, key: KeyPrincipal) -> LimitDecision:
        tokens = await self._token_window(key)
        if tokens is not None and tokens.remaining <= 0:
            requests = await self._request_window(key)
            refuse("tokens per minute", LimitDecision(requests, tokens), tokens)
        admitted = True
        if key.requests_per_minute > 0:
            item = RateLimitItemPerMinute(key.requests_per_minute)
            admitted = await self._requests.hit(item, self._namespace, "rpm", key.key_id)
        requests = await self._request_window(key)
        decision = LimitDecision(requests, tokens)
        if not admitted and requests is not None:
            refuse("requests per minute", decision, requests)
        return decision

    async def peek(self, key: KeyPrincipal) -> LimitDecision:
        try:
            return LimitDecision(await self._request_window(key), await self._token_window(key))
        except StorageError:
            return LimitDecision(None, None)  # only headers: not worth failing the answer

    async def charge_tokens(self, key: KeyPrincipal, tokens: int) -> None:
        if key.tokens_per_minute <= 0 or tokens <= 0:
            return
        item = RateLimitItemPerMinute(key.tokens_per_minute)
        try:
            # A fixed-window hit always adds the cost, even past the limit.
            await self._tokens.hit(item, self._namespace, "tpm", key.key_id, cost=tokens)
        except StorageError as error:
            raise Unavailable("rate limiting is unavailable") from error

    async def _request_window(self, key: KeyPrincipal) -> LimitWindow | None:
        if key.requests_per_minute <= 0:
            return None
        item = RateLimitItemPerMinute(key.requests_per_minute)
        stats = await self._requests.get_window_stats(item, self._namespace, "rpm", key.key_id)
        return self._window(key.requests_per_minute, stats.remaining, stats.reset_time)

    async def _token_window(self, key: KeyPrincipal) -> LimitWindow | None:
        if key.tokens_per_minute <= 0:
            return None
        item = RateLimitItemPerMinute(key.tokens_per_minute)
        stats = await self._tokens.get_window_stats(item, self._namespace, "tpm", key.key_id)
        return self._window(key.tokens_per_minute, stats.remaining, stats.reset_time)

    def _window(self, limit: int, remaining: int, reset_time: float) -> LimitWindow:
        return LimitWindow(limit, max(0, remaining), max(0.0, reset_time - self._clock()))


def refuse(what: str, decision: LimitDecision, window: LimitWindow) -> NoReturn:
    """Raises the rate-limit error with the headers and when to come back."""
    retry_after = max(window.reset_s, 0.001)
    raise ResourceExhausted(
        f"rate limit reached: {window.limit} {what}; retry in {retry_after:.1f}s",
        retry_after_s=retry_after,
        headers=decision.headers(),
    )
