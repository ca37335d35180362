"""Users: argon2id hashes, the default admin, creation and password changes, on both databases."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Literal

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher
from identity_helpers import ADMIN_EMAIL, ADMIN_PASSWORD, FAST_HASHER

from gpucloud_server.errors import AlreadyExists, InvalidArgument, NotFound
from gpucloud_server.identity.assembly import Identity
from gpucloud_server.identity.storage.tables import users
from gpucloud_server.identity.users import (
    MAX_CONCURRENT_HASHES,
    ROLE_ADMIN,
    ROLE_MEMBER,
    Users,
    WrongPassword,
    normalize_email,
)


async def test_first_start_creates_the_default_admin_flagged_to_change_password(
    identity: Identity,
) -> None:
    user = await identity.users.authenticate(ADMIN_EMAIL, ADMIN_PASSWORD)
    assert user is not None
    assert user.role == ROLE_ADMIN
    assert user.must_change_password


async def test_a_second_start_does_not_recreate_the_admin(identity: Identity) -> None:
    admin = await identity.users.authenticate(ADMIN_EMAIL, ADMIN_PASSWORD)
    assert admin is not None
    await identity.users.change_password(admin.id, ADMIN_PASSWORD, "a-better-password")
    assert not await identity.users.ensure_admin(ADMIN_EMAIL, ADMIN_PASSWORD)
    assert await identity.users.authenticate(ADMIN_EMAIL, ADMIN_PASSWORD) is None


async def test_passwords_are_stored_as_argon2id_hashes(identity: Identity) -> None:
    await identity.users.create("someone@example.com", "correct horse", ROLE_MEMBER)
    async with identity.database.read() as conn:
        stored = (await conn.execute(sa.select(users.c.password_hash))).scalars().all()
    assert all(h.startswith("$argon2id$") for h in stored)
    assert not any("correct horse" in h or ADMIN_PASSWORD in h for h in stored)


async def test_emails_are_unique_case_insensitively(identity: Identity) -> None:
    await identity.users.create("Someone@Example.com", "password-1", ROLE_MEMBER)
    with pytest.raises(AlreadyExists):
        await identity.users.create("someone@example.COM ", "password-2", ROLE_MEMBER)
    user = await identity.users.authenticate("SOMEONE@example.com", "password-1")
    assert user is not None
    assert user.email == "someone@example.com"


@pytest.mark.parametrize("password", ["", "1234567", "x" * 257])
async def test_passwords_outside_8_to_256_characters_are_refused(
    identity: Identity, password: str
) -> None:
    with pytest.raises(InvalidArgument, match="8 to 256"):
        await identity.users.create("someone@example.com", password, ROLE_MEMBER)


@pytest.mark.parametrize("password", ["12345678", "x" * 256])
async def test_passwords_of_8_and_256_characters_are_accepted(
    identity: Identity, password: str
) -> None:
    user = await identity.users.create("someone@example.com", password, ROLE_MEMBER)
    assert await identity.users.authenticate(user.email, password) == user


@pytest.mark.parametrize(
    "email",
    ["", "no-at-sign", "@example.com", "a@", "a b@example.com", "a@b@c", "a" * 250 + "@x.io"],
)
def test_malformed_emails_are_refused(email: str) -> None:
    with pytest.raises(InvalidArgument):
        normalize_email(email)


async def test_unknown_roles_are_refused(identity: Identity) -> None:
    with pytest.raises(InvalidArgument):
        await identity.users.create("someone@example.com", "password-1", "root")


async def test_changing_the_password_clears_the_flag_and_retires_the_old_one(
    identity: Identity,
) -> None:
    admin = await identity.users.authenticate(ADMIN_EMAIL, ADMIN_PASSWORD)
    assert admin is not None
    changed = await identity.users.change_password(admin.id, ADMIN_PASSWORD, "a-new-password")
    assert not changed.must_change_password
    assert await identity.users.authenticate(ADMIN_EMAIL, ADMIN_PASSWORD) is None
    assert await identity.users.authenticate(ADMIN_EMAIL, "a-new-password") is not None


async def test_a_password_change_needs_the_current_password(identity: Identity) -> None:
    admin = await identity.users.authenticate(ADMIN_EMAIL, ADMIN_PASSWORD)
    assert admin is not None
    with pytest.raises(WrongPassword):
        await identity.users.change_password(admin.id, "not-the-password", "a-new-password")
    with pytest.raises(InvalidArgument, match="differ"):
        await identity.users.change_password(admin.id, ADMIN_PASSWORD, ADMIN_PASSWORD)
    with pytest.raises(InvalidArgument, match="8 to 256"):
        await identity.users.change_password(admin.id, ADMIN_PASSWORD, "short")
    with pytest.raises(NotFound):
        await identity.users.change_password("nobody", ADMIN_PASSWORD, "a-new-password")


async def test_unknown_email_and_wrong_password_both_read_as_none(identity: Identity) -> None:
    assert await identity.users.authenticate("nobody@example.com", ADMIN_PASSWORD) is None
    assert await identity.users.authenticate(ADMIN_EMAIL, "wrong-password") is None
    assert await identity.users.authenticate("x" * 10_000, "y" * 10_000) is None


async def test_weak_hashes_are_upgraded_on_login(identity: Identity) -> None:
    from argon2 import PasswordHasher

    weaker = PasswordHasher(time_cost=1, memory_cost=512, parallelism=1)
    async with identity.database.write() as conn:
        await conn.execute(users.update().values(password_hash=weaker.hash(ADMIN_PASSWORD)))
    assert await identity.users.authenticate(ADMIN_EMAIL, ADMIN_PASSWORD) is not None
    async with identity.database.read() as conn:
        stored = (await conn.execute(sa.select(users.c.password_hash))).scalar_one()
    assert not FAST_HASHER.check_needs_rehash(stored)


class CountingHasher(PasswordHasher):
    """FAST_HASHER's parameters; records how many verifications overlap."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=1024, parallelism=1)
        self._lock = threading.Lock()
        self._running = 0
        self.peak = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        with self._lock:
            self._running += 1
            self.peak = max(self.peak, self._running)
        try:
            time.sleep(0.05)
            return super().verify(hash, password)
        finally:
            with self._lock:
                self._running -= 1


async def test_a_flood_of_logins_hashes_at_most_four_at_once(identity: Identity) -> None:
    hasher = CountingHasher()
    flooded = Users(identity.database, hasher)
    tries = [flooded.authenticate(ADMIN_EMAIL, f"guess-{i}") for i in range(12)]
    assert await asyncio.gather(*tries) == [None] * 12
    assert hasher.peak == MAX_CONCURRENT_HASHES == 4


async def test_a_session_epoch_changes_with_the_password_only(identity: Identity) -> None:
    admin = await identity.users.authenticate(ADMIN_EMAIL, ADMIN_PASSWORD)
    assert admin is not None
    assert (await identity.users.get(admin.id)).session_epoch == admin.session_epoch
    changed = await identity.users.change_password(admin.id, ADMIN_PASSWORD, "a-new-password")
    assert changed.session_epoch not in {"", admin.session_epoch}
    assert [u.session_epoch for u in await identity.users.list_all()] == [changed.session_epoch]
