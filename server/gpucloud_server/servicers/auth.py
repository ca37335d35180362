"""AuthService: a thin adapter from gRPC to users, sessions and API keys."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import TypeAlias, TypeVar

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from gpucloud.v1 import auth_pb2, auth_pb2_grpc
from gpucloud_server.config import LOOPBACK_NETWORKS, Network
from gpucloud_server.errors import InvalidArgument, NotFound, PermissionDenied, Unauthenticated
from gpucloud_server.identity.assembly import Accounts
from gpucloud_server.identity.keys import ApiKey
from gpucloud_server.identity.keyspec import MAX_MODELS, KeySpec
from gpucloud_server.identity.users import ROLE_ADMIN, ROLE_MEMBER, User
from gpucloud_server.principal import UserPrincipal
from gpucloud_server.servicers.metadata import AnyContext, bearer_token

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Context: TypeAlias = grpc.aio.ServicerContext[Req, Resp]  # the context of one RPC
MAX_ID = 64
MAX_ADDRESS = 64
ROLES = {ROLE_ADMIN: auth_pb2.USER_ROLE_ADMIN, ROLE_MEMBER: auth_pb2.USER_ROLE_MEMBER}


def _timestamp(seconds: float | None) -> Timestamp | None:
    if seconds is None:
        return None
    stamp = Timestamp()
    stamp.FromMilliseconds(round(seconds * 1000))
    return stamp


def user_pb(user: User) -> auth_pb2.User:
    return auth_pb2.User(
        id=user.id,
        email=user.email,
        role=ROLES.get(user.role, auth_pb2.USER_ROLE_UNSPECIFIED),
        must_change_password=user.must_change_password,
        created_at=_timestamp(user.created_at),
    )


def key_pb(key: ApiKey) -> auth_pb2.ApiKey:
    return auth_pb2.ApiKey(
        id=key.id,
        name=key.name,
        owner_id=key.owner_id,
        owner_email=key.owner_email,
        last4=key.last4,
        created_at=_timestamp(key.created_at),
        last_used_at=_timestamp(key.last_used_at),
        revoked_at=_timestamp(key.revoked_at),
        expires_at=_timestamp(key.expires_at),
        allowed_models=list(key.allowed_models),
        rate_limit_per_minute=key.requests_per_minute,
        tokens_per_minute=key.tokens_per_minute,
        priority=key.priority,
        requests=key.requests,
        tokens=key.tokens,
    )


def client_address(context: AnyContext, trusted: Sequence[Network] = LOOPBACK_NETWORKS) -> str:
    """The caller's IP for login throttling: the peer's own, or, when the peer is a trusted
    proxy (a gateway), the client address it forwards in x-forwarded-for."""
    peer = _peer_address(context)
    if not _within(peer, trusted):
        return peer
    for name, value in context.invocation_metadata() or ():
        if name == "x-forwarded-for":
            text = value if isinstance(value, str) else value.decode(errors="replace")
            first = text.split(",")[0].strip()
            if first:
                return first[:MAX_ADDRESS]
    return peer


def _peer_address(context: AnyContext) -> str:
    peer: str = context.peer() or "unknown"
    kind, _, rest = peer.partition(":")
    if kind in {"ipv4", "ipv6"}:
        host = rest.rsplit(":", 1)[0]
        return host.strip("[]")[:MAX_ADDRESS]
    return kind[:MAX_ADDRESS]


def _within(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False  # a unix socket, or a peer grpc could not name
    return any(ip in network for network in trusted)


def key_spec(request: auth_pb2.CreateApiKeyRequest) -> KeySpec:
    if len(request.allowed_models) > MAX_MODELS:
        raise InvalidArgument(f"at most {MAX_MODELS} allowed models")
    expires_at = None
    if request.HasField("expires_at"):
        expires_at = request.expires_at.ToMilliseconds() / 1000
    return KeySpec(
        name=request.name,
        requests_per_minute=request.rate_limit_per_minute,
        tokens_per_minute=request.tokens_per_minute,
        priority=request.priority,
        expires_at=expires_at,
        allowed_models=tuple(request.allowed_models),
    )


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    def __init__(
        self,
        accounts: Accounts,
        trusted_proxies: Sequence[Network] = LOOPBACK_NETWORKS,
    ) -> None:
        self._logins = accounts.logins
        self._sessions = accounts.sessions
        self._users = accounts.users
        self._keys = accounts.keys
        self._trusted_proxies = trusted_proxies

    async def _caller(self, context: AnyContext) -> UserPrincipal:
        """The session's user; a session ended by a password change is refused, also one
        made through another core (within sessions.EPOCH_RECHECK_S)."""
        token = bearer_token(context)
        if token is None:
            raise Unauthenticated("sign in first: send 'authorization: Bearer <token>'")
        return await self._sessions.verify_current(token, self._users.get)

    async def Login(
        self,
        request: auth_pb2.LoginRequest,
        context: Context[auth_pb2.LoginRequest, auth_pb2.LoginResponse],
    ) -> auth_pb2.LoginResponse:
        address = client_address(context, self._trusted_proxies)
        result = await self._logins.login(request.email, request.password, address)
        return auth_pb2.LoginResponse(
            token=result.session.token,
            user=user_pb(result.user),
            expires_at=result.session.expires_at,
        )

    async def GetMe(
        self,
        request: auth_pb2.GetMeRequest,
        context: Context[auth_pb2.GetMeRequest, auth_pb2.GetMeResponse],
    ) -> auth_pb2.GetMeResponse:
        caller = await self._caller(context)
        try:
            user = await self._users.get(caller.user_id)
        except NotFound as error:
            raise Unauthenticated("this session's user no longer exists") from error
        return auth_pb2.GetMeResponse(user=user_pb(user))

    async def ChangePassword(
        self,
        request: auth_pb2.ChangePasswordRequest,
        context: Context[auth_pb2.ChangePasswordRequest, auth_pb2.ChangePasswordResponse],
    ) -> auth_pb2.ChangePasswordResponse:
        """Ends every session of the user, the caller's too: sign in again afterwards."""
        caller = await self._caller(context)
        user = await self._logins.change_password(
            caller.user_id,
            request.current_password,
            request.new_password,
            client_address(context, self._trusted_proxies),
        )
        return auth_pb2.ChangePasswordResponse(user=user_pb(user))

    async def CreateUser(
        self,
        request: auth_pb2.CreateUserRequest,
        context: Context[auth_pb2.CreateUserRequest, auth_pb2.CreateUserResponse],
    ) -> auth_pb2.CreateUserResponse:
        caller = await self._caller(context)
        if not caller.is_admin:
            raise PermissionDenied("only admins may create users")
        role = ROLE_ADMIN if request.role == auth_pb2.USER_ROLE_ADMIN else ROLE_MEMBER
        user = await self._users.create(request.email, request.password, role)
        return auth_pb2.CreateUserResponse(user=user_pb(user))

    async def CreateApiKey(
        self,
        request: auth_pb2.CreateApiKeyRequest,
        context: Context[auth_pb2.CreateApiKeyRequest, auth_pb2.CreateApiKeyResponse],
    ) -> auth_pb2.CreateApiKeyResponse:
        """Admins may set any priority and limits within the bounds; members at most the
        defaults (priority 5, the server's requests/tokens per minute), else PermissionDenied."""
        caller = await self._caller(context)
        created = await self._keys.create(caller, key_spec(request))
        return auth_pb2.CreateApiKeyResponse(key=key_pb(created.key), secret=created.secret)

    async def ListApiKeys(
        self,
        request: auth_pb2.ListApiKeysRequest,
        context: Context[auth_pb2.ListApiKeysRequest, auth_pb2.ListApiKeysResponse],
    ) -> auth_pb2.ListApiKeysResponse:
        caller = await self._caller(context)
        keys = await self._keys.list(caller)
        return auth_pb2.ListApiKeysResponse(keys=[key_pb(k) for k in keys])

    async def RevokeApiKey(
        self,
        request: auth_pb2.RevokeApiKeyRequest,
        context: Context[auth_pb2.RevokeApiKeyRequest, auth_pb2.RevokeApiKeyResponse],
    ) -> auth_pb2.RevokeApiKeyResponse:
        caller = await self._caller(context)
        if not 1 <= len(request.id) <= MAX_ID:
            raise NotFound("no such API key")
        return auth_pb2.RevokeApiKeyResponse(
            key=key_pb(await self._keys.revoke(caller, request.id))
        )
