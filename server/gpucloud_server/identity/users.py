"""Dashboard users: argon2id password hashes, the default admin, password changes."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import exc as sa_exc

from gpucloud_server.errors import AlreadyExists, InvalidArgument, NotFound
from gpucloud_server.identity.storage import Database
from gpucloud_server.identity.storage.tables import users
from gpucloud_server.principal import UserPrincipal

log = logging.getLogger(__name__)

ROLE_ADMIN = "admin"
ROLE_MEMBER = "member"
ROLES = frozenset({ROLE_ADMIN, ROLE_MEMBER})
MIN_PASSWORD = 8
MAX_PASSWORD = 256
MAX_EMAIL = 254
# argon2id takes ~64 MiB and a core's worth of time per hash (RFC 9106 low-memory
# defaults): a flood of logins must queue, not exhaust CPU and memory.
MAX_CONCURRENT_HASHES = 4


@dataclass(frozen=True, slots=True)
class User:
    id: str
    email: str
    role: str
    must_change_password: bool
    created_at: float  # unix seconds
    # Changes whenever the password hash does; sessions carry it (see sessions.py).
    session_epoch: str = field(default="", repr=False, compare=False)

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


def session_epoch(password_hash: str) -> str:
    """A digest of the hash: a new password, or a rehash, gives a new epoch and so
    ends the sessions issued before it. The hash has its own salt; nothing about the
    password can be learnt from this without it."""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:32]


def _user(row: sa.Row[tuple[object, ...]]) -> User:
    m = row._mapping
    return User(
        id=str(m["id"]),
        email=str(m["email"]),
        role=str(m["role"]),
        must_change_password=bool(m["must_change_password"]),
        created_at=int(m["created_ms"]) / 1000,
        session_epoch=session_epoch(str(m["password_hash"])),
    )


class Users:
    """User accounts. Hashing runs in a thread, at most MAX_CONCURRENT_HASHES at once:
    argon2id is deliberately slow and memory-hungry."""

    def __init__(
        self,
        db: Database,
        hasher: PasswordHasher | None = None,
        clock: Callable[[], float] = time.time,
        *,
        max_concurrent_hashes: int = MAX_CONCURRENT_HASHES,
    ) -> None:
        self._db = db
        self._hasher = hasher or PasswordHasher()  # argon2id with RFC 9106 low-memory defaults
        self._clock = clock
        self._hashing = asyncio.Semaphore(max_concurrent_hashes)
        self._dummy_hash: str | None = None

    async def _hash(self, password: str) -> str:
        async with self._hashing:
            return await asyncio.to_thread(self._hasher.hash, password)

    async def _verify(self, stored: str, password: str) -> bool:
        try:
            async with self._hashing:
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
        password_hash = await self._hash(password)
        user = User(
            uuid.uuid4().hex,
            address,
            role,
            must_change_password,
            now_ms / 1000,
            session_epoch(password_hash),
        )
        values = {
            "id": user.id,
            "email": user.email,
            "password_hash": password_hash,
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

    async def list_all(self) -> list[User]:
        """Every user, oldest first (Sessions.preload learns their session epochs)."""
        query = users.select().order_by(users.c.created_ms, users.c.id)
        async with self._db.read() as conn:
            return [_user(row) for row in (await conn.execute(query)).all()]

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
            rehashed = await self._hash(password)
            # Only over the hash just verified: a password changed meanwhile stays changed
            # (and this login's session, with the old epoch, ends with it).
            if await self._set_hash(user.id, rehashed, user.must_change_password, replacing=stored):
                user = replace(user, session_epoch=session_epoch(rehashed))
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

    async def _set_hash(
        self,
        user_id: str,
        password_hash: str,
        must_change_password: bool,
        *,
        replacing: str | None = None,
    ) -> bool:
        """True when written; with `replacing`, only while that is still the stored hash."""
        query = (
            users.update()
            .where(users.c.id == user_id)
            .values(password_hash=password_hash, must_change_password=must_change_password)
        )
        if replacing is not None:
            query = query.where(users.c.password_hash == replacing)
        async with self._db.write() as conn:
            result = await conn.execute(query)
        return bool(result.rowcount)

    async def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = await self._hash(secrets.token_urlsafe(16))
        return self._dummy_hash

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)
