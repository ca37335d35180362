"""Login throttling per account+IP, per account and per IP, with memory and Redis storage;
password changes ending sessions."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from identity_helpers import ADMIN_EMAIL, ADMIN_PASSWORD, FAST_HASHER, make_settings

from gpucloud_server.errors import InvalidArgument, ResourceExhausted, Unauthenticated
from gpucloud_server.identity import assembly as identity_module
from gpucloud_server.identity.assembly import Identity
from gpucloud_server.identity.login import LoginPolicy

MAX_FAILURES = 3
MAX_PER_IP = 5
MAX_PER_ACCOUNT = 6
LOCKOUT_S = 1


@pytest.fixture(
    params=[
        pytest.param("memory", id="memory"),
        pytest.param("redis", id="redis", marks=pytest.mark.services),
    ]
)
async def identity(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Identity]:
    redis = request.getfixturevalue("redis_url") if request.param == "redis" else None
    # The per-account window has no setting of its own; the policy's default is 20.
    policy = functools.partial(LoginPolicy, max_failures_per_account=MAX_PER_ACCOUNT)
    monkeypatch.setattr(identity_module, "LoginPolicy", policy)
    settings = make_settings(
        tmp_path,
        None,
        redis_url=redis,
        login_max_failures=MAX_FAILURES,
        login_max_failures_per_ip=MAX_PER_IP,
        login_lockout_s=LOCKOUT_S,
    )
    async with Identity(settings, password_hasher=FAST_HASHER) as ident:
        yield ident


async def _fail(identity: Identity, email: str, ip: str, times: int) -> None:
    for _ in range(times):
        with pytest.raises(Unauthenticated):
            await identity.logins.login(email, "wrong-password", ip)


async def test_a_good_login_returns_a_session(identity: Identity) -> None:
    result = await identity.logins.login(ADMIN_EMAIL, ADMIN_PASSWORD, "10.0.0.1")
    assert identity.sessions.verify(result.session.token).email == ADMIN_EMAIL
    assert result.user.must_change_password


async def test_unknown_user_and_wrong_password_get_the_same_answer(identity: Identity) -> None:
    with pytest.raises(Unauthenticated) as unknown:
        await identity.logins.login("nobody@example.com", ADMIN_PASSWORD, "10.0.0.1")
    with pytest.raises(Unauthenticated) as wrong:
        await identity.logins.login(ADMIN_EMAIL, "wrong-password", "10.0.0.2")
    assert unknown.value.message == wrong.value.message
    assert unknown.value.headers == wrong.value.headers == {}
    assert unknown.value.code == wrong.value.code


async def test_an_account_locks_after_its_failures_even_for_the_right_password(
    identity: Identity,
) -> None:
    await _fail(identity, ADMIN_EMAIL, "10.0.0.1", MAX_FAILURES)
    with pytest.raises(ResourceExhausted) as locked:
        await identity.logins.login(ADMIN_EMAIL, ADMIN_PASSWORD, "10.0.0.1")
    assert locked.value.retry_after_s is not None
    assert 0 < locked.value.retry_after_s <= LOCKOUT_S + 1
    # Another address is not locked out of the account.
    await identity.logins.login(ADMIN_EMAIL, ADMIN_PASSWORD, "10.0.0.2")


async def test_unknown_accounts_lock_the_same_way(identity: Identity) -> None:
    await _fail(identity, "nobody@example.com", "10.0.0.1", MAX_FAILURES)
    with pytest.raises(ResourceExhausted):
        await identity.logins.login("nobody@example.com", "whatever-password", "10.0.0.1")


async def test_an_address_locks_after_failures_across_accounts(identity: Identity) -> None:
    for i in range(MAX_PER_IP):
        await _fail(identity, f"user{i}@example.com", "10.0.0.9", 1)
    with pytest.raises(ResourceExhausted):
        await identity.logins.login(ADMIN_EMAIL, ADMIN_PASSWORD, "10.0.0.9")
    await identity.logins.login(ADMIN_EMAIL, ADMIN_PASSWORD, "10.0.0.10")


async def test_concurrent_guesses_are_held_to_the_limit(identity: Identity) -> None:
    guesses = [identity.logins.login(ADMIN_EMAIL, f"guess-{i}", "10.0.0.1") for i in range(40)]
    outcomes = await asyncio.gather(*guesses, return_exceptions=True)
    assert sum(isinstance(o, Unauthenticated) for o in outcomes) == MAX_FAILURES
    assert sum(isinstance(o, ResourceExhausted) for o in outcomes) == 40 - MAX_FAILURES
    with pytest.raises(ResourceExhausted):
        await identity.logins.login(ADMIN_EMAIL, ADMIN_PASSWORD, "10.0.0.1")


async def test_concurrent_guesses_across_accounts_are_held_to_the_address_limit(
    identity: Identity,
) -> None:
    guesses = [identity.logins.login(f"u{i}@example.com", "guess", "10.0.0.9") for i in range(40)]
    outcomes = await asyncio.gather(*guesses, return_exceptions=True)
    assert sum(isinstance(o, Unauthenticated) for o in outcomes) == MAX_PER_IP
    assert sum(isinstance(o, ResourceExhausted) for o in outcomes) == 40 - MAX_PER_IP


@pytest.mark.parametrize("email", [ADMIN_EMAIL, "nobody@example.com"])
async def test_guesses_spread_over_addresses_lock_the_account(
    identity: Identity, email: str
) -> None:
    for i in range(MAX_PER_ACCOUNT):
        await _fail(identity, email, f"10.1.0.{i}", 1)
    with pytest.raises(ResourceExhausted) as locked:
        await identity.logins.login(email, ADMIN_PASSWORD, "10.2.0.1")
    assert locked.value.retry_after_s is not None
    # Other accounts are not locked from those addresses.
    await _fail(identity, "someone-else@example.com", "10.1.0.0", 1)


async def test_good_logins_neither_count_nor_reset_the_account_or_address_counts(
    identity: Identity,
) -> None:
    for i in range(MAX_PER_ACCOUNT - 1):
        await _fail(identity, ADMIN_EMAIL, f"10.1.0.{i}", 1)
    for _ in range(MAX_PER_IP + 1):
        await identity.logins.login(ADMIN_EMAIL, ADMIN_PASSWORD, "10.2.0.1")
    await _fail(identity, ADMIN_EMAIL, "10.1.0.9", 1)
    with pytest.raises(ResourceExhausted):
        await identity.logins.login(ADMIN_EMAIL, ADMIN_PASSWORD, "10.2.0.1")


async def test_a_good_login_resets_the_account_count(identity: Identity) -> None:
    await _fail(identity, ADMIN_EMAIL, "10.0.0.1", MAX_FAILURES - 1)
    await identity.logins.login(ADMIN_EMAIL, ADMIN_PASSWORD, "10.0.0.1")
    await _fail(identity, ADMIN_EMAIL, "10.0.0.1", MAX_FAILURES - 1)
    await identity.logins.login(ADMIN_EMAIL, ADMIN_PASSWORD, "10.0.0.1")


@pytest.mark.slow
async def test_a_lockout_ends_when_its_window_passes(identity: Identity) -> None:
    await _fail(identity, ADMIN_EMAIL, "10.0.0.1", MAX_FAILURES)
    with pytest.raises(ResourceExhausted) as locked:
        await identity.logins.login(ADMIN_EMAIL, ADMIN_PASSWORD, "10.0.0.1")
    assert locked.value.retry_after_s is not None
    await asyncio.sleep(locked.value.retry_after_s + 0.1)
    await identity.logins.login(ADMIN_EMAIL, ADMIN_PASSWORD, "10.0.0.1")


async def test_password_changes_are_throttled_like_logins(identity: Identity) -> None:
    result = await identity.logins.login(ADMIN_EMAIL, ADMIN_PASSWORD, "10.0.0.1")
    user_id = result.user.id
    for _ in range(MAX_FAILURES):
        with pytest.raises(InvalidArgument):
            await identity.logins.change_password(user_id, "wrong-password", "new-password", "x")
    with pytest.raises(ResourceExhausted):
        await identity.logins.change_password(user_id, ADMIN_PASSWORD, "new-password", "x")


async def test_a_password_change_ends_earlier_sessions(identity: Identity) -> None:
    sessions, users = identity.sessions, identity.users
    first = await identity.logins.login(ADMIN_EMAIL, ADMIN_PASSWORD, "10.0.0.1")
    second = await identity.logins.login(ADMIN_EMAIL, ADMIN_PASSWORD, "10.0.0.2")
    await sessions.verify_current(first.session.token, users.get)
    await identity.logins.change_password(first.user.id, ADMIN_PASSWORD, "n3w-password", "x")
    for old in (first.session.token, second.session.token):
        with pytest.raises(Unauthenticated, match="password change"):
            sessions.verify(old)
        with pytest.raises(Unauthenticated, match="password change"):
            await sessions.verify_current(old, users.get)
    new = await identity.logins.login(ADMIN_EMAIL, "n3w-password", "10.0.0.1")
    assert sessions.verify(new.session.token).user_id == first.user.id
    await sessions.verify_current(new.session.token, users.get)


async def test_a_password_change_made_before_a_restart_still_ends_sessions(
    identity: Identity,
) -> None:
    old = await identity.logins.login(ADMIN_EMAIL, ADMIN_PASSWORD, "10.0.0.1")
    await identity.logins.change_password(old.user.id, ADMIN_PASSWORD, "n3w-password", "x")
    async with Identity(identity.settings, password_hasher=FAST_HASHER) as restarted:
        with pytest.raises(Unauthenticated, match="password change"):
            await restarted.sessions.verify_current(old.session.token, restarted.users.get)
    async with Identity(identity.settings, password_hasher=FAST_HASHER) as restarted:
        # start() preloads every user's epoch, so the plain verify() that MonitorService
        # uses refuses the ended session too.
        with pytest.raises(Unauthenticated, match="password change"):
            restarted.sessions.verify(old.session.token)
