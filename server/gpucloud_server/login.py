"""Login with brute-force throttling: attempts counted per account+IP, per account, per IP."""

from __future__ import annotations

import contextlib
import secrets
import time
from dataclasses import dataclass

from limits import RateLimitItemPerSecond
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError

from gpucloud_server.errors import InvalidArgument, ResourceExhausted, Unauthenticated, Unavailable
from gpucloud_server.sessions import IssuedToken, Sessions
from gpucloud_server.users import User, Users, check_password_rules

_REFUSED = "invalid email or password"


@dataclass(frozen=True, slots=True)
class LoginPolicy:
    max_failures: int = 5  # per account and IP
    max_failures_per_ip: int = 50
    window_s: int = 900
    # Per account across all IPs: bounds guesses spread over many (or spoofed) addresses.
    max_failures_per_account: int = 20


@dataclass(frozen=True, slots=True)
class LoginResult:
    session: IssuedToken
    user: User


class LoginThrottle:
    """Counts login attempts in moving windows (memory or Redis, via `limits`).

    An attempt takes its place in every window *before* the password is checked,
    each place taken atomically by the storage, so concurrent guesses cannot all
    slip past a window with room for one. A correct password then clears the
    account's windows (its own success included); the per-IP window keeps
    counting, so an attacker cannot reset it by signing in to an account of its own.
    """

    def __init__(self, storage: Storage, policy: LoginPolicy, namespace: str) -> None:
        self._limiter = MovingWindowRateLimiter(storage)
        self._account_ip = RateLimitItemPerSecond(policy.max_failures, policy.window_s)
        self._account = RateLimitItemPerSecond(policy.max_failures_per_account, policy.window_s)
        self._ip = RateLimitItemPerSecond(policy.max_failures_per_ip, policy.window_s)
        self._namespace = namespace

    def _windows(self, email: str, ip: str) -> tuple[tuple[RateLimitItemPerSecond, str], ...]:
        account = email.strip().lower()[:254]
        return (
            (self._account_ip, f"account:{account}|{ip}"),
            (self._account, f"user:{account}"),
            (self._ip, f"ip:{ip}"),
        )

    async def reserve(self, email: str, ip: str) -> None:
        """Counts one attempt; raises ResourceExhausted (with retry_after_s) when a window
        is full. Counted as failed until succeeded() says otherwise."""
        try:
            for item, who in self._windows(email, ip):
                if not await self._limiter.hit(item, self._namespace, "login", who):
                    stats = await self._limiter.get_window_stats(
                        item, self._namespace, "login", who
                    )
                    retry = max(1.0, stats.reset_time - time.time())
                    raise ResourceExhausted(
                        "too many failed logins; try again later",
                        retry_after_s=retry,
                        metadata={"retry-after": str(int(retry + 0.999))},
                    )
        except StorageError as error:
            raise Unavailable("login throttling is unavailable; try again") from error

    async def succeeded(self, email: str, ip: str) -> None:
        """A correct password clears the account's windows (not the IP's)."""
        try:
            for item, who in self._windows(email, ip)[:2]:
                await self._limiter.clear(item, self._namespace, "login", who)
        except StorageError as error:
            raise Unavailable("login throttling is unavailable; try again") from error


class Logins:
    """Email + password -> JWT. Unknown email and wrong password read the same."""

    def __init__(self, users: Users, sessions: Sessions, throttle: LoginThrottle) -> None:
        self._users = users
        self._sessions = sessions
        self._throttle = throttle

    async def login(self, email: str, password: str, ip: str) -> LoginResult:
        await self._throttle.reserve(email, ip)
        user = await self._users.authenticate(email, password)
        if user is None:
            raise Unauthenticated(_REFUSED)
        await self._throttle.succeeded(email, ip)
        return LoginResult(self._sessions.issue(user), user)

    async def change_password(self, user_id: str, current: str, new: str, ip: str) -> User:
        """Password change, throttled like a login: a stolen session must not be
        able to brute-force the current password. Ends every session of the user,
        the caller's included (Sessions.password_changed): the dashboard signs in again."""
        user = await self._users.get(user_id)
        # Refuse what no current password could make valid before counting an attempt.
        check_password_rules(new)
        if secrets.compare_digest(current.encode(), new.encode()):
            raise InvalidArgument("the new password must differ from the current one")
        await self._throttle.reserve(user.email, ip)
        changed = await self._users.change_password(user_id, current, new)
        self._sessions.password_changed(changed)
        # The change is made: a throttle store that cannot be reached must not report it failed.
        with contextlib.suppress(Unavailable):
            await self._throttle.succeeded(user.email, ip)
        return changed
