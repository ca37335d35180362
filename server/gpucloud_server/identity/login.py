"""Login with brute-force throttling: failures counted per account+IP, per account, per IP."""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass

from limits.aio.storage import Storage
from limits.errors import StorageError

from gpucloud_server.errors import InvalidArgument, ResourceExhausted, Unauthenticated, Unavailable
from gpucloud_server.identity.sessions import IssuedToken, Sessions
from gpucloud_server.identity.users import User, Users, check_password_rules

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


@dataclass(frozen=True, slots=True)
class _Window:
    key: str
    limit: int


class LoginThrottle:
    """Counts failed logins in windows of `window_s` (memory or Redis counters, via `limits`).

    An attempt is counted *before* its password is checked, by one atomic increment
    per window, and refused (counting nothing) when that takes a window past its
    limit: concurrent guesses cannot all slip through a window with room for one.
    A correct password gives its count back: it clears the account's count from
    that address, and is taken off the per-account and per-IP counts, which it
    does not clear (signing in to an account of one's own must not reset them).
    """

    def __init__(self, storage: Storage, policy: LoginPolicy, namespace: str) -> None:
        self._storage = storage
        self._policy = policy
        self._prefix = f"{namespace}/login"

    def _windows(self, email: str, ip: str) -> tuple[_Window, _Window, _Window]:
        account = email.strip().lower()[:254]
        policy, prefix = self._policy, self._prefix
        return (
            _Window(f"{prefix}/account:{account}|{ip}", policy.max_failures),
            _Window(f"{prefix}/user:{account}", policy.max_failures_per_account),
            _Window(f"{prefix}/ip:{ip}", policy.max_failures_per_ip),
        )

    async def reserve(self, email: str, ip: str) -> None:
        """Counts one attempt as failed until succeeded() says otherwise; raises
        ResourceExhausted (with retry_after_s) when a window is full."""
        counted: list[_Window] = []
        try:
            for window in self._windows(email, ip):
                counted.append(window)
                if await self._storage.incr(window.key, self._policy.window_s) > window.limit:
                    retry = max(1.0, await self._storage.get_expiry(window.key) - time.time())
                    await self._give_back(counted)
                    raise ResourceExhausted(
                        "too many failed logins; try again later",
                        retry_after_s=retry,
                        headers={"retry-after": str(int(retry + 0.999))},
                    )
        except StorageError as error:
            raise Unavailable("login throttling is unavailable; try again") from error

    async def succeeded(self, email: str, ip: str) -> None:
        account_ip, *others = self._windows(email, ip)
        try:
            await self._storage.clear(account_ip.key)
            await self._give_back(others)
        except StorageError as error:
            raise Unavailable("login throttling is unavailable; try again") from error

    async def _give_back(self, windows: Iterable[_Window]) -> None:
        for window in windows:
            if await self._storage.incr(window.key, self._policy.window_s, -1) < 0:
                await self._storage.clear(window.key)  # cleared meanwhile: not below zero


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
