"""Dashboard users: argon2id password hashes, the default admin, password changes."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import exc as sa_exc

from gpucloud_server.errors import AlreadyExists, InvalidArgument, NotFound
from gpucloud_server.principal import UserPrincipal
from gpucloud_server.storage import Database
from gpucloud_server.storage.tables import users

log = logging.getLogger(__name__)

ROLE_ADMIN = "admin"
ROLE_MEMBER = "member"
ROLES = frozenset({ROLE_ADMIN, ROLE_MEMBER})
MIN_PASSWORD = 8
MAX_PASSWORD = 256
MAX_EMAIL = 254


@dataclass(frozen=True, slots=True)
class User:
    id: str
    email: str
    role: str
    must_change_password: bool
    created_at: float  # unix seconds

    @property
    def is_admin(self) -> bool:
        return self.role == ROLE_ADMIN

    def principal(self) -> UserPrincipal:
        return UserPrincipal(user_id=self.id, email=self.email, is_admin=self.is_admin)


class WrongPassword(InvalidArgument):
    """The current password given to a password change is not the user's."""


def normalize_email(email: str) -> str:
    """Lower-cased and stripped; raises InvalidArgument unless it looks like an address."""
    value = email.strip().lower()
    local, at, domain = value.partition("@")
    if (
        not at
        or not local
        or not domain
        or "@" in domain
        or len(value) > MAX_EMAIL
        or not value.isprintable()
        or any(c.isspace() for c in value)
    ):
        raise InvalidArgument("email must be an address of at most 254 characters")
    return value


def check_password_rules(password: str) -> None:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise InvalidArgument(f"password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters long")


def _user(row: sa.Row[tuple[object, ...]]) -> User:
    m = row._mapping
    return User(
        id=str(m["id"]),
        email=str(m["email"]),
        role=str(m["role"]),
        must_change_password=bool(m["must_change_password"]),
        created_at=int(m["created_ms"]) / 1000,
    )


class Users:
    """User accounts. Hashing runs in a thread: argon2id is deliberately slow."""

    def __init__(
        self,
        db: Database,
        hasher: PasswordHasher | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        self._hasher = hasher or PasswordHasher()  # argon2id with RFC 9106 low-memory defaults
        self._clock = clock
        self._dummy_hash: str | None = None

    async def _hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def _verify(self, stored: str, password: str) -> bool:
        try:
            return await asyncio.to_thread(self._hasher.verify, stored, password)
        except (VerificationError, InvalidHashError):
            return False

    async def ensure_admin(self, email: str, password: str) -> bool:
        """Creates the default admin when there are no users; True when it did."""
        async with self._db.read() as conn:
            count = (await conn.execute(sa.select(sa.func.count()).select_from(users))).scalar()
        if count:
            return False
        try:
            await self.create(email, password, ROLE_ADMIN, must_change_password=True)
        except AlreadyExists:
            return False  # another core created it first
        log.info("created the default admin %s; change its password", normalize_email(email))
        return True

    async def create(
        self, email: str, password: str, role: str, *, must_change_password: bool = False
    ) -> User:
        address = normalize_email(email)
        check_password_rules(password)
        if role not in ROLES:
            raise InvalidArgument("role must be admin or member")
        now_ms = self._now_ms()
        user = User(uuid.uuid4().hex, address, role, must_change_password, now_ms / 1000)
        values = {
            "id": user.id,
            "email": user.email,
            "password_hash": await self._hash(password),
            "role": user.role,
            "must_change_password": must_change_password,
            "created_ms": now_ms,
        }
        try:
            async with self._db.write() as conn:
                await conn.execute(users.insert().values(values))
        except sa_exc.IntegrityError as error:
            raise AlreadyExists("a user with this email exists") from error
        return user

    async def get(self, user_id: str) -> User:
        async with self._db.read() as conn:
            row = (await conn.execute(users.select().where(users.c.id == user_id))).first()
        if row is None:
            raise NotFound("no such user")
        return _user(row)

    async def authenticate(self, email: str, password: str) -> User | None:
        """The user when email and password match, else None; unknown users cost the
        same hashing time as known ones, so timing does not reveal which emails exist."""
        row = None
        if len(email) <= MAX_EMAIL and len(password) <= MAX_PASSWORD:
            async with self._db.read() as conn:
                query = users.select().where(users.c.email == email.strip().lower())
                row = (await conn.execute(query)).first()
        if row is None:
            await self._verify(await self._dummy(), password[:MAX_PASSWORD])
            return None
        stored = str(row._mapping["password_hash"])
        if not await self._verify(stored, password):
            return None
        user = _user(row)
        if self._hasher.check_needs_rehash(stored):
            await self._set_hash(user.id, await self._hash(password), user.must_change_password)
        return user

    async def change_password(self, user_id: str, current: str, new: str) -> User:
        check_password_rules(new)
        async with self._db.read() as conn:
            row = (await conn.execute(users.select().where(users.c.id == user_id))).first()
        if row is None:
            raise NotFound("no such user")
        if len(current) > MAX_PASSWORD or not await self._verify(
            str(row._mapping["password_hash"]), current
        ):
            raise WrongPassword("the current password is not correct")
        if secrets.compare_digest(current.encode(), new.encode()):
            raise InvalidArgument("the new password must differ from the current one")
        await self._set_hash(user_id, await self._hash(new), must_change_password=False)
        return await self.get(user_id)

    async def _set_hash(self, user_id: str, password_hash: str, must_change_password: bool) -> None:
        query = (
            users.update()
            .where(users.c.id == user_id)
            .values(password_hash=password_hash, must_change_password=must_change_password)
        )
        async with self._db.write() as conn:
            await conn.execute(query)

    async def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = await self._hash(secrets.token_urlsafe(16))
        return self._dummy_hash

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)
