"""AuthService over a real grpc.aio server on port 0, behind the core's ErrorInterceptor."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from identity_helpers import ADMIN_EMAIL, ADMIN_PASSWORD, FAST_HASHER, make_settings

from gpucloud.v1 import auth_pb2, auth_pb2_grpc
from gpucloud_server import config
from gpucloud_server.errors import Unauthenticated
from gpucloud_server.identity.assembly import Identity
from gpucloud_server.interceptor import ErrorInterceptor
from gpucloud_server.servicers.auth import AuthServicer, client_address

MAX_FAILURES = 3


@dataclass
class Service:
    identity: Identity
    stub: auth_pb2_grpc.AuthServiceAsyncStub

    async def login(self, email: str, password: str, ip: str = "203.0.113.1") -> str:
        response = await self.stub.Login(
            auth_pb2.LoginRequest(email=email, password=password),
            metadata=(("x-forwarded-for", f"{ip}, 10.0.0.1"),),
        )
        return response.token


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    settings = make_settings(tmp_path, None, login_max_failures=MAX_FAILURES)
    async with Identity(settings, password_hasher=FAST_HASHER) as identity:
        server = grpc.aio.server(interceptors=[ErrorInterceptor()])
        auth = AuthServicer(identity.accounts, settings.trusted_proxies)
        auth_pb2_grpc.add_AuthServiceServicer_to_server(auth, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                yield Service(identity, auth_pb2_grpc.AuthServiceStub(channel))  # type: ignore[arg-type]
        finally:
            await server.stop(None)


async def test_login_and_me(service: Service) -> None:
    response = await service.stub.Login(
        auth_pb2.LoginRequest(email=ADMIN_EMAIL, password=ADMIN_PASSWORD)
    )
    assert response.user.email == ADMIN_EMAIL
    assert response.user.role == auth_pb2.USER_ROLE_ADMIN
    assert response.user.must_change_password
    assert response.expires_at > time.time()
    me = await service.stub.GetMe(auth_pb2.GetMeRequest(), metadata=bearer(response.token))
    assert me.user.id == response.user.id


async def test_unknown_user_and_wrong_password_read_the_same(service: Service) -> None:
    errors = []
    for email, password in ((ADMIN_EMAIL, "wrong-password"), ("nobody@x.io", ADMIN_PASSWORD)):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await service.login(email, password, ip="198.51.100.7")
        errors.append((refused.value.code(), refused.value.details()))
    assert errors[0] == errors[1]
    assert errors[0][0] == grpc.StatusCode.UNAUTHENTICATED


async def test_login_lockout_carries_retry_after_and_follows_the_forwarded_address(
    service: Service,
) -> None:
    for _ in range(MAX_FAILURES):
        with pytest.raises(grpc.aio.AioRpcError):
            await service.login(ADMIN_EMAIL, "wrong-password", ip="198.51.100.7")
    with pytest.raises(grpc.aio.AioRpcError) as locked:
        await service.login(ADMIN_EMAIL, ADMIN_PASSWORD, ip="198.51.100.7")
    assert locked.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    trailing = dict(locked.value.trailing_metadata() or ())
    assert int(trailing["retry-after-ms"]) > 0
    await service.login(ADMIN_EMAIL, ADMIN_PASSWORD, ip="198.51.100.8")


async def test_calls_without_a_valid_session_are_unauthenticated(service: Service) -> None:
    token = await service.login(ADMIN_EMAIL, ADMIN_PASSWORD)
    for metadata in (
        (),
        bearer("not-a-jwt"),
        bearer(token[:-3] + "abc"),
        (("authorization", token),),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await service.stub.ListApiKeys(auth_pb2.ListApiKeysRequest(), metadata=metadata)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_password_change_clears_the_nag(service: Service) -> None:
    token = await service.login(ADMIN_EMAIL, ADMIN_PASSWORD)
    with pytest.raises(grpc.aio.AioRpcError) as short:
        await service.stub.ChangePassword(
            auth_pb2.ChangePasswordRequest(current_password=ADMIN_PASSWORD, new_password="short"),
            metadata=bearer(token),
        )
    assert short.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    changed = await service.stub.ChangePassword(
        auth_pb2.ChangePasswordRequest(current_password=ADMIN_PASSWORD, new_password="n3w-pass"),
        metadata=bearer(token),
    )
    assert not changed.user.must_change_password
    await service.login(ADMIN_EMAIL, "n3w-pass")


async def test_a_password_change_ends_the_callers_and_other_sessions(service: Service) -> None:
    token = await service.login(ADMIN_EMAIL, ADMIN_PASSWORD)
    other = await service.login(ADMIN_EMAIL, ADMIN_PASSWORD, ip="203.0.113.2")
    await service.stub.GetMe(auth_pb2.GetMeRequest(), metadata=bearer(other))
    await service.stub.ChangePassword(
        auth_pb2.ChangePasswordRequest(current_password=ADMIN_PASSWORD, new_password="n3w-pass"),
        metadata=bearer(token),
    )
    for old in (token, other):
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await service.stub.GetMe(auth_pb2.GetMeRequest(), metadata=bearer(old))
        assert ended.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "password change" in (ended.value.details() or "")
    fresh = await service.login(ADMIN_EMAIL, "n3w-pass")
    await service.stub.GetMe(auth_pb2.GetMeRequest(), metadata=bearer(fresh))


async def test_only_admins_create_users(service: Service) -> None:
    admin = await service.login(ADMIN_EMAIL, ADMIN_PASSWORD)
    created = await service.stub.CreateUser(
        auth_pb2.CreateUserRequest(email="Member@Example.com", password="member-pass"),
        metadata=bearer(admin),
    )
    assert created.user.email == "member@example.com"
    assert created.user.role == auth_pb2.USER_ROLE_MEMBER
    with pytest.raises(grpc.aio.AioRpcError) as duplicate:
        await service.stub.CreateUser(
            auth_pb2.CreateUserRequest(email="member@example.com", password="member-pass"),
            metadata=bearer(admin),
        )
    assert duplicate.value.code() == grpc.StatusCode.ALREADY_EXISTS
    member = await service.login("member@example.com", "member-pass")
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await service.stub.CreateUser(
            auth_pb2.CreateUserRequest(email="other@example.com", password="other-pass"),
            metadata=bearer(member),
        )
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_keys_are_created_listed_and_revoked_per_owner(service: Service) -> None:
    admin = await service.login(ADMIN_EMAIL, ADMIN_PASSWORD)
    await service.stub.CreateUser(
        auth_pb2.CreateUserRequest(email="m@example.com", password="member-pass"),
        metadata=bearer(admin),
    )
    member = await service.login("m@example.com", "member-pass")
    expires = Timestamp(seconds=int(time.time()) + 3600)
    created = await service.stub.CreateApiKey(
        auth_pb2.CreateApiKeyRequest(
            name="ci",
            rate_limit_per_minute=30,
            priority=3,
            expires_at=expires,
            allowed_models=["llama-3-8b"],
        ),
        metadata=bearer(member),
    )
    secret = created.secret
    assert secret.startswith("gpc_")
    assert created.key.last4 == secret[-4:]
    assert created.key.rate_limit_per_minute == 30
    assert created.key.priority == 3
    assert created.key.expires_at.seconds == expires.seconds
    assert created.key.HasField("created_at")
    assert not created.key.HasField("revoked_at")

    listed = await service.stub.ListApiKeys(auth_pb2.ListApiKeysRequest(), metadata=bearer(member))
    assert [k.id for k in listed.keys] == [created.key.id]
    assert secret.encode() not in listed.SerializeToString()
    everyone = await service.stub.ListApiKeys(auth_pb2.ListApiKeysRequest(), metadata=bearer(admin))
    assert everyone.keys[0].owner_email == "m@example.com"

    admin_key = await service.stub.CreateApiKey(
        auth_pb2.CreateApiKeyRequest(name="admin's"), metadata=bearer(admin)
    )
    with pytest.raises(grpc.aio.AioRpcError) as foreign:
        await service.stub.RevokeApiKey(
            auth_pb2.RevokeApiKeyRequest(id=admin_key.key.id), metadata=bearer(member)
        )
    assert foreign.value.code() == grpc.StatusCode.NOT_FOUND

    revoked = await service.stub.RevokeApiKey(
        auth_pb2.RevokeApiKeyRequest(id=created.key.id), metadata=bearer(member)
    )
    assert revoked.key.HasField("revoked_at")
    with pytest.raises(Unauthenticated):
        await service.identity.keys.authenticate(secret)


async def test_members_are_denied_keys_above_the_default_priority_and_limits(
    service: Service,
) -> None:
    admin = await service.login(ADMIN_EMAIL, ADMIN_PASSWORD)
    await service.stub.CreateUser(
        auth_pb2.CreateUserRequest(email="m@example.com", password="member-pass"),
        metadata=bearer(admin),
    )
    member = await service.login("m@example.com", "member-pass")
    for request_, message in (
        (auth_pb2.CreateApiKeyRequest(name="k", priority=10), "priority above 5"),
        (
            auth_pb2.CreateApiKeyRequest(name="k", rate_limit_per_minute=10_000),
            "rate_limit_per_minute above 60",
        ),
        (
            auth_pb2.CreateApiKeyRequest(name="k", tokens_per_minute=1_000_000_000),
            "tokens_per_minute above 100000",
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await service.stub.CreateApiKey(request_, metadata=bearer(member))
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert denied.value.details() == f"only admins may set {message}"
    raised = await service.stub.CreateApiKey(
        auth_pb2.CreateApiKeyRequest(name="k", priority=10, rate_limit_per_minute=10_000),
        metadata=bearer(admin),
    )
    assert (raised.key.priority, raised.key.rate_limit_per_minute) == (10, 10_000)


@pytest.mark.parametrize(
    "request_",
    [
        auth_pb2.CreateApiKeyRequest(name=""),
        auth_pb2.CreateApiKeyRequest(name="x" * 101),
        auth_pb2.CreateApiKeyRequest(name="k", priority=11),
        auth_pb2.CreateApiKeyRequest(name="k", allowed_models=[f"m{i}" for i in range(65)]),
        auth_pb2.CreateApiKeyRequest(name="k", expires_at=Timestamp(seconds=1)),
        auth_pb2.CreateApiKeyRequest(name="k", rate_limit_per_minute=2_000_000),
    ],
    ids=["empty-name", "long-name", "priority", "models", "past-expiry", "rpm"],
)
async def test_key_requests_out_of_bounds_are_invalid(
    service: Service, request_: auth_pb2.CreateApiKeyRequest
) -> None:
    admin = await service.login(ADMIN_EMAIL, ADMIN_PASSWORD)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await service.stub.CreateApiKey(request_, metadata=bearer(admin))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


class _Context:
    def __init__(self, peer: str, metadata: tuple[tuple[str, str], ...] = ()) -> None:
        self._peer = peer
        self._metadata = metadata

    def peer(self) -> str:
        return self._peer

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata


@pytest.mark.parametrize(
    ("peer", "metadata", "expected"),
    [
        ("ipv4:192.0.2.1:51234", (), "192.0.2.1"),
        ("ipv6:[2001:db8::1]:51234", (), "2001:db8::1"),
        ("unix:/tmp/sock", (), "unix"),
        ("ipv4:127.0.0.1:1", (("x-forwarded-for", "203.0.113.9, 10.0.0.1"),), "203.0.113.9"),
        ("ipv6:[::1]:1", (("x-forwarded-for", "203.0.113.9"),), "203.0.113.9"),
        ("ipv4:127.0.0.1:1", (("x-forwarded-for", " "),), "127.0.0.1"),
        # Anyone else's claim is ignored: a direct client cannot pick whose lockout it hits.
        ("ipv4:192.0.2.1:51234", (("x-forwarded-for", "203.0.113.9"),), "192.0.2.1"),
        ("unix:/tmp/sock", (("x-forwarded-for", "203.0.113.9"),), "unix"),
    ],
)
def test_the_client_address_believes_forwarded_for_only_from_loopback_by_default(
    peer: str, metadata: tuple[tuple[str, str], ...], expected: str
) -> None:
    assert client_address(_Context(peer, metadata)) == expected  # type: ignore[arg-type]


def test_a_gateway_on_another_host_is_trusted_once_configured() -> None:
    settings = config.from_sources(None, {"GPUCLOUD_TRUSTED_PROXIES": "10.0.0.5, 192.0.2.0/24"})
    forwarded = (("x-forwarded-for", "203.0.113.9"),)
    for peer, expected in (
        ("ipv4:10.0.0.5:1", "203.0.113.9"),
        ("ipv4:192.0.2.77:1", "203.0.113.9"),
        ("ipv4:10.0.0.6:1", "10.0.0.6"),
        ("ipv4:127.0.0.1:1", "127.0.0.1"),  # the list replaces the loopback default
    ):
        context = _Context(peer, forwarded)
        assert client_address(context, settings.trusted_proxies) == expected  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="does not appear to be"):
        config.from_sources(None, {"GPUCLOUD_TRUSTED_PROXIES": "gateway.local"})
