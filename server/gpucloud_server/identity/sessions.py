"""Dashboard sessions: pinned-HS256 JWTs with exp/iat/iss/aud checked (the SessionAuthority),
ended early by a password change through the user's session epoch."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from jose import JWTError, jwt

from gpucloud_server.errors import NotFound, Unauthenticated
from gpucloud_server.identity.users import ROLE_ADMIN, User
from gpucloud_server.principal import UserPrincipal

log = logging.getLogger(__name__)

ALGORITHM = "HS256"  # pinned: tokens naming any other algorithm (or none) are refused
ISSUER = "gpucloud"
AUDIENCE = "gpucloud-dashboard"
SECRET_FILE = "jwt_secret"  # noqa: S105 - a file name, not a secret
MIN_SECRET_LENGTH = 32
MAX_TOKEN_LENGTH = 4096
EPOCH_CLAIM = "sep"
# How long this core trusts the epoch it learnt before verify_current() reads it again:
# the most a password change made through another core can go unnoticed here.
EPOCH_RECHECK_S = 30.0
_INVALID = "invalid or expired session"
_ENDED = "this session ended with a password change; sign in again"

_REQUIRED_CLAIMS = {
    "require_exp": True,
    "require_iat": True,
    "require_iss": True,
    "require_aud": True,
    "require_sub": True,
    "verify_signature": True,
    "verify_exp": True,
    "verify_iat": True,
    "verify_iss": True,
    "verify_aud": True,
    "leeway": 5,
}


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    expires_at: int  # unix seconds


@dataclass(frozen=True, slots=True)
class _Epoch:
    sealed: str
    learnt_at: float  # time.monotonic()
    order: int  # this core's count of epochs learnt, when this one was


class Sessions:
    """Issues and verifies dashboard JWTs; implements principal.SessionAuthority.

    Each token carries its user's session epoch (users.session_epoch, which changes
    with the password hash), sealed with the signing secret. verify() refuses a
    token whose epoch is not the one this core last learnt for its user, from a map
    in memory: no database read per call.

    - password_changed() teaches the new epoch at once: in one core, a password
      change ends every session issued before it, on every service.
    - verify_current() (async; AuthService calls it) reads the user again when its
      epoch is unknown here or older than EPOCH_RECHECK_S. So after a restart, or a
      change made through another core, AuthService catches up within that time.
    - verify() alone accepts a user whose epoch it has not learnt. Cores share no
      epochs: MonitorService, which only calls verify(), sees a change made through
      another core, or before a restart, only once verify_current() or preload()
      has learnt that user's epoch here.
    """

    def __init__(self, secret: str, *, ttl_s: int, clock: Callable[[], float] = time.time) -> None:
        if len(secret) < MIN_SECRET_LENGTH:
            raise ValueError(f"the JWT secret must be at least {MIN_SECRET_LENGTH} characters")
        self._secret = secret
        self._ttl_s = ttl_s
        self._clock = clock
        self._epochs: dict[str, _Epoch] = {}
        self._learnt = 0

    def issue(self, user: User) -> IssuedToken:
        now = int(self._clock())
        expires_at = now + self._ttl_s
        claims = {
            "sub": user.id,
            "email": user.email,
            "role": user.role,
            "iss": ISSUER,
            "aud": AUDIENCE,
            "iat": now,
            "exp": expires_at,
            "jti": secrets.token_hex(8),
            EPOCH_CLAIM: self._seal(user.session_epoch),
        }
        return IssuedToken(jwt.encode(claims, self._secret, algorithm=ALGORITHM), expires_at)

    def verify(self, token: str) -> UserPrincipal:
        sub, email, role, epoch = self._claims(token, "sub", "email", "role", EPOCH_CLAIM)
        known = self._epochs.get(sub)
        if known is not None and not hmac.compare_digest(known.sealed.encode(), epoch.encode()):
            raise Unauthenticated(_ENDED)
        return UserPrincipal(user_id=sub, email=email, is_admin=role == ROLE_ADMIN)

    async def verify_current(
        self, token: str, load_user: Callable[[str], Awaitable[User]]
    ) -> UserPrincipal:
        """verify(), with the user's epoch read again when unknown or stale here."""
        principal = self.verify(token)
        known = self._epochs.get(principal.user_id)
        if known is not None and time.monotonic() - known.learnt_at < EPOCH_RECHECK_S:
            return principal
        since = self._learnt
        try:
            user = await load_user(principal.user_id)
        except NotFound as error:
            raise Unauthenticated("this session's user no longer exists") from error
        self._learn(user, since)
        return self.verify(token)

    def password_changed(self, user: User) -> None:
        """`user` as read after the change: sessions with an older epoch end here now."""
        self._learn(user, self._learnt)

    async def preload(self, load_all: Callable[[], Awaitable[Iterable[User]]]) -> None:
        """Learns every user's epoch, e.g. at start, so that verify() alone refuses
        sessions that a password change ended before this core started."""
        since = self._learnt
        for user in await load_all():
            self._learn(user, since)

    def _claims(self, token: str, *names: str) -> list[str]:
        """The named claims of a valid token, each required to be a string (so tokens
        issued before epochs existed are refused too)."""
        if not token or len(token) > MAX_TOKEN_LENGTH:
            raise Unauthenticated(_INVALID)
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=ISSUER,
                options=_REQUIRED_CLAIMS,
            )
        except JWTError as error:
            raise Unauthenticated(_INVALID) from error
        values = [claims.get(name) for name in names]
        if not all(isinstance(value, str) for value in values):
            raise Unauthenticated(_INVALID)
        return [str(value) for value in values]

    def _seal(self, epoch: str) -> str:
        message = b"session-epoch:" + epoch.encode()
        return hmac.new(self._secret.encode(), message, hashlib.sha256).hexdigest()[:32]

    def _learn(self, user: User, since: int) -> None:
        """Records `user`'s epoch, read after this core had learnt `since` epochs."""
        known = self._epochs.get(user.id)
        if known is not None and known.order > since:
            return  # learnt while the read was in flight (a password change, say): it wins
        self._learnt += 1
        sealed = self._seal(user.session_epoch)
        self._epochs[user.id] = _Epoch(sealed, time.monotonic(), self._learnt)


def load_or_create_secret(data_dir: Path) -> str:
    """The secret kept in data_dir (0600), generated on first use; safe when two
    processes race to create it."""
    path = Path(data_dir) / SECRET_FILE
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    candidate = secrets.token_urlsafe(48)
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(candidate)
            out.flush()
            os.fsync(out.fileno())
        log.info("generated a JWT signing secret in %s", path)
        return candidate
    if path.stat().st_mode & 0o077:
        log.warning("%s is readable by other users; chmod 600 it", path)
    for _ in range(50):  # the creator may be between open() and write()
        secret = path.read_text().strip()
        if secret:
            return secret
        time.sleep(0.01)
    raise RuntimeError(f"{path} is empty; delete it to generate a new JWT secret")
