"""API keys on both databases: format, hashing, ownership, revocation, expiry, cache."""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from identity_helpers import FAST_HASHER, ManualClock, make_settings, new_member

from gpucloud_server.config import CoreSettings
from gpucloud_server.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from gpucloud_server.identity import keyformat
from gpucloud_server.identity import keys as keys_module
from gpucloud_server.identity.assembly import Identity
from gpucloud_server.identity.keycache import KeyCache
from gpucloud_server.identity.keys import ApiKeys
from gpucloud_server.identity.keyspec import KeyDefaults, KeySpec
from gpucloud_server.identity.storage.tables import metadata
from gpucloud_server.principal import UserPrincipal

SPEC = KeySpec(name="test key")


@contextmanager
def count_statements(identity: Identity) -> Iterator[list[str]]:
    seen: list[str] = []

    def listener(*args: object) -> None:
        seen.append(str(args[2]))

    engine = identity.database.engine.sync_engine
    sa.event.listen(engine, "before_cursor_execute", listener)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", listener)


def test_secrets_have_the_prefix_length_checksum_and_entropy() -> None:
    made = {keyformat.generate_secret() for _ in range(2000)}
    assert len(made) == 2000
    assert all(s.startswith("gpc_") and len(s) == 40 and keyformat.is_well_formed(s) for s in made)
    assert keyformat.RANDOM_CHARS * math.log2(62) >= 160


def test_every_single_character_typo_is_caught_by_the_checksum() -> None:
    secret = keyformat.generate_secret()
    for i in range(len(keyformat.PREFIX), len(secret)):
        other = secrets.choice(keyformat.ALPHABET.replace(secret[i], ""))
        assert not keyformat.is_well_formed(secret[:i] + other + secret[i + 1 :])
    for i in range(len(keyformat.PREFIX), len(secret) - 1):
        if secret[i] != secret[i + 1]:
            swapped = secret[:i] + secret[i + 1] + secret[i] + secret[i + 2 :]
            assert not keyformat.is_well_formed(swapped)


async def test_a_mistyped_key_is_refused_without_a_database_lookup(
    identity: Identity, member: UserPrincipal
) -> None:
    created = await identity.keys.create(member, SPEC)
    typo = created.secret[:-1] + ("a" if created.secret[-1] != "a" else "b")
    with count_statements(identity) as statements:
        for bad in (typo, "", "gpc_", "sk-" + created.secret[3:], created.secret + "x"):
            with pytest.raises(Unauthenticated):
                await identity.keys.authenticate(bad)
    assert statements == []


async def test_authentication_is_served_from_the_cache(
    identity: Identity, member: UserPrincipal
) -> None:
    created = await identity.keys.create(member, SPEC)
    await identity.keys.authenticate(created.secret)
    with count_statements(identity) as statements:
        for _ in range(100):
            principal = await identity.keys.authenticate(created.secret)
    assert statements == []
    assert principal.key_id == created.key.id
    assert principal.user_id == member.user_id


async def test_the_secret_is_stored_only_as_a_hash(
    identity: Identity, member: UserPrincipal, settings: CoreSettings
) -> None:
    created = await identity.keys.create(member, SPEC)
    await identity.keys.authenticate(created.secret)
    await identity.keys.flush_last_used()
    await identity.keys.revoke(member, created.key.id)
    async with identity.database.read() as conn:
        dump = [
            repr((await conn.execute(table.select())).all()) for table in metadata.sorted_tables
        ]
    assert keyformat.hash_secret(created.secret) in "".join(dump)
    assert created.secret not in "".join(dump)
    assert created.secret[4:-4] not in "".join(dump)
    if settings.database_url is None:
        files = list(Path(settings.data_dir).glob("gpucloud.db*"))
        assert files
        for path in files:
            assert created.secret.encode() not in path.read_bytes()


async def test_the_secret_never_reaches_logs_or_lists(
    identity: Identity, member: UserPrincipal, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    created = await identity.keys.create(member, SPEC)
    await identity.keys.authenticate(created.secret)
    listed = await identity.keys.list(member)
    await identity.keys.revoke(member, created.key.id)
    with pytest.raises(Unauthenticated):
        await identity.keys.authenticate(created.secret)
    assert created.secret not in caplog.text
    assert created.secret not in repr(created)
    assert created.secret not in repr(listed)
    assert listed[0].last4 == created.secret[-4:]


async def test_defaults_fill_in_zeros(identity: Identity, member: UserPrincipal) -> None:
    created = await identity.keys.create(member, SPEC)
    key = created.key
    settings = identity.settings
    assert key.requests_per_minute == settings.default_requests_per_minute
    assert key.tokens_per_minute == settings.default_tokens_per_minute
    assert key.priority == 5
    assert key.expires_at is None
    assert key.allowed_models == ()


@pytest.mark.parametrize(
    "spec",
    [
        KeySpec(name=""),
        KeySpec(name="   "),
        KeySpec(name="x" * 101),
        KeySpec(name="bad\nname"),
        KeySpec(name="k", priority=11),
        KeySpec(name="k", priority=-1),
        KeySpec(name="k", requests_per_minute=-1),
        KeySpec(name="k", requests_per_minute=10_001),
        KeySpec(name="k", tokens_per_minute=1_000_000_001),
        KeySpec(name="k", allowed_models=tuple(f"m{i}" for i in range(65))),
        KeySpec(name="k", allowed_models=("",)),
        KeySpec(name="k", allowed_models=("x" * 201,)),
        KeySpec(name="k", expires_at=1.0),
        KeySpec(name="k", expires_at=time.time() + 11 * 365 * 86400),
    ],
    ids=lambda spec: repr(spec)[:60],
)
async def test_out_of_bounds_requests_are_refused(
    identity: Identity, member: UserPrincipal, spec: KeySpec
) -> None:
    with pytest.raises(InvalidArgument):
        await identity.keys.create(member, spec)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (KeySpec(name="k", priority=6), "only admins may set priority above 5"),
        (KeySpec(name="k", priority=10), "only admins may set priority above 5"),
        (
            KeySpec(name="k", requests_per_minute=61),
            "only admins may set rate_limit_per_minute above 60",
        ),
        (
            KeySpec(name="k", tokens_per_minute=1_000_000_000),
            "only admins may set tokens_per_minute above 100000",
        ),
    ],
    ids=["priority-6", "priority-10", "rpm", "tpm"],
)
async def test_members_may_not_raise_a_key_above_the_defaults(
    identity: Identity, member: UserPrincipal, spec: KeySpec, message: str
) -> None:
    with pytest.raises(PermissionDenied) as denied:
        await identity.keys.create(member, spec)
    assert denied.value.message == message
    assert await identity.keys.list(member) == []


async def test_members_may_ask_for_the_defaults_or_less(
    identity: Identity, member: UserPrincipal
) -> None:
    spec = KeySpec(name="k", priority=5, requests_per_minute=60, tokens_per_minute=100_000)
    key = (await identity.keys.create(member, spec)).key
    assert (key.priority, key.requests_per_minute, key.tokens_per_minute) == (5, 60, 100_000)
    low = (await identity.keys.create(member, KeySpec(name="low", priority=1))).key
    assert low.priority == 1


async def test_admins_may_set_anything_within_the_bounds(
    identity: Identity, admin: UserPrincipal
) -> None:
    spec = KeySpec(
        name="k", priority=10, requests_per_minute=10_000, tokens_per_minute=1_000_000_000
    )
    key = (await identity.keys.create(admin, spec)).key
    assert (key.priority, key.requests_per_minute, key.tokens_per_minute) == (
        10,
        10_000,
        1_000_000_000,
    )


async def test_with_unlimited_defaults_members_may_ask_for_any_rate(
    tmp_path: Path, database_url: str | None
) -> None:
    settings = make_settings(
        tmp_path, database_url, default_requests_per_minute=0, default_tokens_per_minute=0
    )
    async with Identity(settings, password_hasher=FAST_HASHER) as identity:
        member = await new_member(identity)
        spec = KeySpec(name="k", requests_per_minute=10_000, tokens_per_minute=1_000_000_000)
        key = (await identity.keys.create(member, spec)).key
        assert (key.requests_per_minute, key.tokens_per_minute) == (10_000, 1_000_000_000)
        with pytest.raises(PermissionDenied):
            await identity.keys.create(member, KeySpec(name="k", priority=6))


async def test_members_see_and_revoke_only_their_own_keys(
    identity: Identity, admin: UserPrincipal
) -> None:
    alice = await new_member(identity, "alice@example.com")
    bob = await new_member(identity, "bob@example.com")
    alice_key = (await identity.keys.create(alice, KeySpec(name="alice"))).key
    bob_key = (await identity.keys.create(bob, KeySpec(name="bob"))).key
    assert [k.id for k in await identity.keys.list(alice)] == [alice_key.id]
    assert [k.id for k in await identity.keys.list(bob)] == [bob_key.id]
    with pytest.raises(NotFound) as foreign:
        await identity.keys.revoke(alice, bob_key.id)
    with pytest.raises(NotFound) as missing:
        await identity.keys.revoke(alice, "no-such-key")
    assert foreign.value.message == missing.value.message
    assert (await identity.keys.list(bob))[0].revoked_at is None


async def test_admins_see_and_revoke_every_key(identity: Identity, admin: UserPrincipal) -> None:
    alice = await new_member(identity, "alice@example.com")
    alice_key = (await identity.keys.create(alice, KeySpec(name="alice"))).key
    admin_key = (await identity.keys.create(admin, KeySpec(name="admin"))).key
    listed = await identity.keys.list(admin)
    assert {k.id for k in listed} == {alice_key.id, admin_key.id}
    assert {k.owner_email for k in listed} == {"alice@example.com", admin.email}
    assert listed[0].id == admin_key.id  # newest first
    revoked = await identity.keys.revoke(admin, alice_key.id)
    assert revoked.revoked_at is not None


async def test_a_revoked_key_is_refused_at_once(identity: Identity, member: UserPrincipal) -> None:
    created = await identity.keys.create(member, SPEC)
    await identity.keys.authenticate(created.secret)  # now cached
    revoked = await identity.keys.revoke(member, created.key.id)
    with pytest.raises(Unauthenticated, match="revoked"):
        await identity.keys.authenticate(created.secret)
    again = await identity.keys.revoke(member, created.key.id)  # idempotent
    assert again.revoked_at == revoked.revoked_at


async def test_an_expired_key_is_refused(identity: Identity, member: UserPrincipal) -> None:
    clock = ManualClock(time.time())
    cache = KeyCache(30.0, monotonic=clock)
    keys = ApiKeys(identity.database, cache, defaults=KeyDefaults(60, 1000), clock=clock)
    created = await keys.create(member, KeySpec(name="k", expires_at=clock.now + 10))
    await keys.authenticate(created.secret)  # cached while still valid
    clock.advance(10)  # the moment it expires, still well inside the cache's TTL
    with pytest.raises(Unauthenticated, match="expired"):
        await keys.authenticate(created.secret)


async def test_a_key_without_the_model_is_denied(identity: Identity, member: UserPrincipal) -> None:
    spec = KeySpec(name="k", allowed_models=("llama-3-8b", "llama-3-8b", "qwen-7b"))
    created = await identity.keys.create(member, spec)
    assert created.key.allowed_models == ("llama-3-8b", "qwen-7b")
    principal = await identity.keys.authenticate(created.secret)
    principal.check_model("llama-3-8b")
    with pytest.raises(PermissionDenied):
        principal.check_model("gpt-4")


async def test_last_used_is_written_off_the_hot_path(
    identity: Identity, member: UserPrincipal
) -> None:
    created = await identity.keys.create(member, SPEC)
    before = time.time()
    await identity.keys.authenticate(created.secret)
    assert (await identity.keys.list(member))[0].last_used_at is None
    await identity.keys.flush_last_used()
    last_used = (await identity.keys.list(member))[0].last_used_at
    assert last_used is not None
    assert before - 1 <= last_used <= time.time() + 1


async def test_active_keys_per_user_are_bounded(
    identity: Identity, member: UserPrincipal, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keys_module, "MAX_ACTIVE_KEYS_PER_USER", 2)
    first = await identity.keys.create(member, SPEC)
    await identity.keys.create(member, SPEC)
    with pytest.raises(FailedPrecondition):
        await identity.keys.create(member, SPEC)
    await identity.keys.revoke(member, first.key.id)
    await identity.keys.create(member, SPEC)


async def test_another_core_without_redis_sees_a_revoke_within_a_second(
    identity: Identity,
    member: UserPrincipal,
    settings: CoreSettings,
) -> None:
    if settings.database_url is None:
        pytest.skip("SQLite serves a single core, which clears its own cache on revoke")
    clock = ManualClock()  # the other core's cache ages only when this test says so
    async with Identity(settings, password_hasher=FAST_HASHER, monotonic=clock) as other:
        created = await identity.keys.create(member, SPEC)
        await other.keys.authenticate(created.secret)
        assert len(other.key_cache) == 1  # cached over there
        await identity.keys.revoke(member, created.key.id)
        clock.advance(1.0)  # no message reaches it: its cache's TTL must end within the second
        with pytest.raises(Unauthenticated, match="revoked"):
            await other.keys.authenticate(created.secret)
