"""Dashboard JWTs: HS256 pinned, exp/iat/iss/aud required; the secret kept in data_dir."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import stat
import time
from dataclasses import replace
from pathlib import Path

import pytest
from jose import jwt

from gpucloud_server.errors import NotFound, Unauthenticated
from gpucloud_server.identity import sessions as sessions_module
from gpucloud_server.identity.sessions import AUDIENCE, ISSUER, Sessions, load_or_create_secret
from gpucloud_server.identity.users import ROLE_ADMIN, ROLE_MEMBER, User

SECRET = "s" * 48
USER = User("u1", "someone@example.com", ROLE_MEMBER, False, 0.0, "epoch-1")
CHANGED = replace(USER, session_epoch="epoch-2")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(**overrides: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": "u1",
        "email": "someone@example.com",
        "role": ROLE_ADMIN,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 600,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def test_a_session_round_trips() -> None:
    now = int(time.time())  # verify() checks exp against real time: issue at a real moment
    sessions = Sessions(SECRET, ttl_s=600, clock=lambda: now)
    issued = sessions.issue(USER)
    principal = sessions.verify(issued.token)
    assert (principal.user_id, principal.email, principal.is_admin) == (USER.id, USER.email, False)
    assert issued.expires_at == now + 600
    assert jwt.get_unverified_header(issued.token)["alg"] == "HS256"


def test_alg_none_is_refused() -> None:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    payload = _b64(json.dumps(_claims()).encode())
    for token in (f"{header}.{payload}.", f"{header}.{payload}"):
        with pytest.raises(Unauthenticated):
            Sessions(SECRET, ttl_s=600).verify(token)


def test_a_wrong_signature_is_refused() -> None:
    forged = jwt.encode(_claims(), "another-secret-of-enough-length-xxxxxx", algorithm="HS256")
    with pytest.raises(Unauthenticated):
        Sessions(SECRET, ttl_s=600).verify(forged)


def test_a_tampered_payload_is_refused() -> None:
    token = Sessions(SECRET, ttl_s=600).issue(USER).token
    header, _, signature = token.split(".")
    payload = _b64(json.dumps(_claims(role=ROLE_ADMIN)).encode())
    with pytest.raises(Unauthenticated):
        Sessions(SECRET, ttl_s=600).verify(f"{header}.{payload}.{signature}")


def test_another_hmac_algorithm_with_the_right_secret_is_refused() -> None:
    token = jwt.encode(_claims(), SECRET, algorithm="HS512")
    with pytest.raises(Unauthenticated):
        Sessions(SECRET, ttl_s=600).verify(token)


def test_an_expired_session_is_refused() -> None:
    an_hour_ago = time.time() - 3600
    token = Sessions(SECRET, ttl_s=60, clock=lambda: an_hour_ago).issue(USER).token
    with pytest.raises(Unauthenticated):
        Sessions(SECRET, ttl_s=60).verify(token)


@pytest.mark.parametrize(
    "claims",
    [
        _claims(aud="someone-else"),
        _claims(iss="someone-else"),
        _claims(exp=None),
        _claims(iat=None),
        _claims(sub=None),
        _claims(aud=None),
        _claims(),
    ],
    ids=["wrong-aud", "wrong-iss", "no-exp", "no-iat", "no-sub", "no-aud", "no-epoch"],
)
def test_tokens_with_wrong_or_missing_claims_are_refused(claims: dict[str, object]) -> None:
    with pytest.raises(Unauthenticated):
        Sessions(SECRET, ttl_s=600).verify(jwt.encode(claims, SECRET, algorithm="HS256"))


@pytest.mark.parametrize("token", ["", "garbage", "a.b.c", "x" * 5000])
def test_garbage_is_refused(token: str) -> None:
    with pytest.raises(Unauthenticated):
        Sessions(SECRET, ttl_s=600).verify(token)


def test_short_secrets_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 32"):
        Sessions("too-short", ttl_s=600)


def test_the_secret_is_generated_once_with_owner_only_permissions(tmp_path: Path) -> None:
    first = load_or_create_secret(tmp_path)
    assert len(first) >= 48
    path = tmp_path / "jwt_secret"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_or_create_secret(tmp_path) == first
    token = Sessions(first, ttl_s=600).issue(USER).token
    Sessions(load_or_create_secret(tmp_path), ttl_s=600).verify(token)  # survives a restart


def test_a_password_change_ends_the_sessions_issued_before_it() -> None:
    sessions = Sessions(SECRET, ttl_s=600)
    old = sessions.issue(USER).token
    sessions.verify(old)
    sessions.password_changed(CHANGED)
    with pytest.raises(Unauthenticated, match="password change"):
        sessions.verify(old)
    assert sessions.verify(sessions.issue(CHANGED).token).user_id == USER.id
    other = replace(USER, id="u2")
    sessions.verify(sessions.issue(other).token)  # other users are not affected


def test_the_epoch_is_sealed_with_the_secret() -> None:
    token = Sessions(SECRET, ttl_s=600).issue(USER).token
    claims = jwt.get_unverified_claims(token)
    assert USER.session_epoch not in json.dumps(claims)
    other = Sessions("t" * 48, ttl_s=600).issue(USER).token
    assert jwt.get_unverified_claims(other)["sep"] != claims["sep"]


class Loader:
    """Users.get as verify_current() calls it, counting reads; `gate` holds a read open."""

    def __init__(self, user: User | None) -> None:
        self.user = user
        self.reads = 0
        self.gate: asyncio.Event | None = None

    async def __call__(self, user_id: str) -> User:
        self.reads += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.user is None or self.user.id != user_id:
            raise NotFound("no such user")
        return self.user


async def test_verify_current_learns_an_unknown_users_epoch_once() -> None:
    sessions = Sessions(SECRET, ttl_s=600)
    old = sessions.issue(USER).token  # e.g. issued by this core before a restart
    load = Loader(CHANGED)
    with pytest.raises(Unauthenticated, match="password change"):
        await sessions.verify_current(old, load)
    new = sessions.issue(CHANGED).token
    for _ in range(10):
        await sessions.verify_current(new, load)
    assert load.reads == 1


async def test_verify_current_reads_again_once_the_epoch_is_stale(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sessions = Sessions(SECRET, ttl_s=600)
    token = sessions.issue(USER).token
    load = Loader(USER)
    await sessions.verify_current(token, load)
    load.user = CHANGED  # changed through another core
    await sessions.verify_current(token, load)  # within EPOCH_RECHECK_S: not seen yet
    monkeypatch.setattr(sessions_module, "EPOCH_RECHECK_S", 0.0)
    with pytest.raises(Unauthenticated, match="password change"):
        await sessions.verify_current(token, load)
    assert load.reads == 2


async def test_a_change_made_while_a_read_is_in_flight_wins() -> None:
    sessions = Sessions(SECRET, ttl_s=600)
    old, new = sessions.issue(USER).token, sessions.issue(CHANGED).token
    load = Loader(USER)  # the read saw the row before the change
    load.gate = asyncio.Event()
    reading = asyncio.create_task(sessions.verify_current(old, load))
    await asyncio.sleep(0)
    sessions.password_changed(CHANGED)
    load.gate.set()
    with pytest.raises(Unauthenticated, match="password change"):
        await reading
    sessions.verify(new)


async def test_a_deleted_users_session_is_refused() -> None:
    sessions = Sessions(SECRET, ttl_s=600)
    with pytest.raises(Unauthenticated, match="no longer exists"):
        await sessions.verify_current(sessions.issue(USER).token, Loader(None))


async def test_preload_learns_every_users_epoch() -> None:
    sessions = Sessions(SECRET, ttl_s=600)
    old = sessions.issue(USER).token

    async def everyone() -> list[User]:
        return [CHANGED]

    await sessions.preload(everyone)
    with pytest.raises(Unauthenticated, match="password change"):
        sessions.verify(old)
