"""Dashboard sessions: pinned-HS256 JWTs with exp/iat/iss/aud checked (the SessionAuthority)."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from jose import JWTError, jwt

from gpucloud_server.errors import Unauthenticated
from gpucloud_server.principal import UserPrincipal
from gpucloud_server.users import ROLE_ADMIN, User

log = logging.getLogger(__name__)

ALGORITHM = "HS256"  # pinned: tokens naming any other algorithm (or none) are refused
ISSUER = "gpucloud"
AUDIENCE = "gpucloud-dashboard"
SECRET_FILE = "jwt_secret"  # noqa: S105 - a file name, not a secret
MIN_SECRET_LENGTH = 32
MAX_TOKEN_LENGTH = 4096

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


class Sessions:
    """Issues and verifies dashboard JWTs; implements principal.SessionAuthority."""

    def __init__(self, secret: str, *, ttl_s: int, clock: Callable[[], float] = time.time) -> None:
        if len(secret) < MIN_SECRET_LENGTH:
            raise ValueError(f"the JWT secret must be at least {MIN_SECRET_LENGTH} characters")
        self._secret = secret
        self._ttl_s = ttl_s
        self._clock = clock

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
        }
        return IssuedToken(jwt.encode(claims, self._secret, algorithm=ALGORITHM), expires_at)

    def verify(self, token: str) -> UserPrincipal:
        if not token or len(token) > MAX_TOKEN_LENGTH:
            raise Unauthenticated("invalid or expired session")
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
            raise Unauthenticated("invalid or expired session") from error
        sub, email, role = claims.get("sub"), claims.get("email"), claims.get("role")
        if not isinstance(sub, str) or not isinstance(email, str) or not isinstance(role, str):
            raise Unauthenticated("invalid or expired session")
        return UserPrincipal(user_id=sub, email=email, is_admin=role == ROLE_ADMIN)


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
