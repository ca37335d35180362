"""Per-key requests/min and tokens/min for a single core, in process memory.

The same semantics as `limits.py` (moving window for requests, exact at the
boundary; fixed window for tokens, charged after the fact) at a fraction of the
cost: `limits`' async in-memory storage hands every expiry pass to a thread, which
cost about a millisecond per request in the gateway benchmark. With Redis the
core uses `limits.py`, shared by every core.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from gpucloud_server.identity.limits import refuse
from gpucloud_server.principal import KeyPrincipal, LimitDecision, LimitWindow

WINDOW_S = 60.0
PRUNE_EVERY = 1024  # admits between sweeps of idle keys


@dataclass(slots=True)
class _KeyState:
    admitted: deque[float] = field(default_factory=deque)  # admit times, oldest first
    tokens_window_start: float = 0.0
    tokens_used: int = 0


class LocalRateLimiter:
    """Implements principal.RateLimiter for one process."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._keys: dict[str, _KeyState] = {}
        self._admits = 0

    async def admit(self, key: KeyPrincipal) -> LimitDecision:
        now = self._clock()
        self._sweep(now)
        state = self._keys.setdefault(key.key_id, _KeyState())
        tokens = self._token_window(key, state, now)
        if tokens is not None and tokens.remaining <= 0:
            requests = self._requests(key, state, now)
            refuse("tokens per minute", LimitDecision(requests, tokens), tokens)
        if key.requests_per_minute <= 0:
            return LimitDecision(None, tokens)
        window = state.admitted
        _expire(window, now)
        if len(window) >= key.requests_per_minute:
            requests = self._requests(key, state, now)
            assert requests is not None
            refuse("requests per minute", LimitDecision(requests, tokens), requests)
        window.append(now)
        return LimitDecision(self._requests(key, state, now), tokens)

    async def peek(self, key: KeyPrincipal) -> LimitDecision:
        now = self._clock()
        state = self._keys.get(key.key_id) or _KeyState(tokens_window_start=now)
        _expire(state.admitted, now)
        return LimitDecision(self._requests(key, state, now), self._token_window(key, state, now))

    async def charge_tokens(self, key: KeyPrincipal, tokens: int) -> None:
        if key.tokens_per_minute <= 0 or tokens <= 0:
            return
        now = self._clock()
        state = self._keys.setdefault(key.key_id, _KeyState())
        self._roll_tokens(state, now)
        state.tokens_used += tokens  # lands even past the limit: the tokens were spent

    def _requests(self, key: KeyPrincipal, state: _KeyState, now: float) -> LimitWindow | None:
        if key.requests_per_minute <= 0:
            return None
        window = state.admitted
        remaining = max(0, key.requests_per_minute - len(window))
        # The window frees its next slot when the oldest admit leaves it.
        reset = window[0] + WINDOW_S - now if window else 0.0
        return LimitWindow(key.requests_per_minute, remaining, max(0.0, reset))

    def _token_window(self, key: KeyPrincipal, state: _KeyState, now: float) -> LimitWindow | None:
        if key.tokens_per_minute <= 0:
            return None
        self._roll_tokens(state, now)
        remaining = max(0, key.tokens_per_minute - state.tokens_used)
        reset = state.tokens_window_start + WINDOW_S - now
        return LimitWindow(key.tokens_per_minute, remaining, max(0.0, reset))

    @staticmethod
    def _roll_tokens(state: _KeyState, now: float) -> None:
        if now - state.tokens_window_start >= WINDOW_S:
            state.tokens_window_start, state.tokens_used = now, 0

    def _sweep(self, now: float) -> None:
        """Forgets keys idle for a whole window, so memory follows the active keys."""
        self._admits += 1
        if self._admits % PRUNE_EVERY:
            return
        for key_id, state in list(self._keys.items()):
            idle = not state.admitted or state.admitted[-1] <= now - WINDOW_S
            if idle and now - state.tokens_window_start >= WINDOW_S:
                del self._keys[key_id]


def _expire(admitted: deque[float], now: float) -> None:
    """Drops admits that have left the window."""
    while admitted and admitted[0] <= now - WINDOW_S:
        admitted.popleft()
