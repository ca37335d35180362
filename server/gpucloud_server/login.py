"""Login with brute-force throttling: failures counted per account+IP and per IP."""

from __future__ import annotations

import time
from dataclasses import dataclass

from limits import RateLimitItemPerSecond
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError

from gpucloud_server.errors import ResourceExhausted, Unauthenticated, Unavailable
from gpucloud_server.sessions import IssuedToken, Sessions
from gpucloud_server.users import User, Users, WrongPassword

_REFUSED = "invalid email or password"


@dataclass(frozen=True, slots=True)
class LoginPolicy:
    max_failures: int = 5  # per account and IP
    max_failures_per_ip: int = 50
    window_s: int = 900


@dataclass(frozen=True, slots=True)
class LoginResult:
    session: IssuedToken
    user: User


class LoginThrottle:
    """Counts failed logins in moving windows (memory or Redis, via `limits`)."""

    def __init__(self, storage: Storage, policy: LoginPolicy, namespace: str) -> None:
        self._limiter = MovingWindowRateLimiter(storage)
        self._account = RateLimitItemPerSecond(policy.max_failures, policy.window_s)
        self._ip = RateLimitItemPerSecond(policy.max_failures_per_ip, policy.window_s)
        self._namespace = namespace

    def _windows(self, email: str, ip: str) -> tuple[tuple[RateLimitItemPerSecond, str], ...]:
        account = email.strip().lower()[:254]
        return ((self._account, f"account:{account}|{ip}"), (self._ip, f"ip:{ip}"))

    async def check(self, email: str, ip: str) -> None:
        """Raises ResourceExhausted (with retry_after_s) while either window is full."""
        try:
            for item, who in self._windows(email, ip):
                if not await self._limiter.test(item, self._namespace, "login", who):
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

    async def failed(self, email: str, ip: str) -> None:
        try:
            for item, who in self._windows(email, ip):
                await self._limiter.hit(item, self._namespace, "login", who)
        except StorageError as error:
            raise Unavailable("login throttling is unavailable; try again") from error

    async def succeeded(self, email: str, ip: str) -> None:
        """A successful login clears the account's failures from that IP (not the IP's)."""
        item, who = self._windows(email, ip)[0]
        try:
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
        await self._throttle.check(email, ip)
        user = await self._users.authenticate(email, password)
        if user is None:
            await self._throttle.failed(email, ip)
            raise Unauthenticated(_REFUSED)
        await self._throttle.succeeded(email, ip)
        return LoginResult(self._sessions.issue(user), user)

    async def change_password(self, user_id: str, current: str, new: str, ip: str) -> User:
        """Password change, throttled like a login: a stolen session must not be
        able to brute-force the current password."""
        user = await self._users.get(user_id)
        await self._throttle.check(user.email, ip)
        try:
            return await self._users.change_password(user_id, current, new)
        except WrongPassword:
            await self._throttle.failed(user.email, ip)
            raise
