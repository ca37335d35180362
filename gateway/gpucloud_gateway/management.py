"""The management REST API of docs/management-api.md: JSON in, AuthService/MonitorService out.

The caller's JWT travels to the core as `authorization` metadata; the core
decides who may see what (another user's key is a 404 there, not here) and
what a value may be (a key's limits, a metrics window): this module checks the
JSON's shape only.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

import grpc
import orjson
from google.protobuf.timestamp_pb2 import Timestamp
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from gpucloud.v1 import auth_pb2, auth_pb2_grpc, monitor_pb2, monitor_pb2_grpc
from gpucloud_gateway import management_json as js
from gpucloud_gateway.errors import from_grpc, sse_error_event
from gpucloud_gateway.fields import Body, DateTime, Integer, Query, String, StringList
from gpucloud_gateway.metadata import Credential, jwt_credential, session_metadata
from gpucloud_gateway.middleware import request_info
from gpucloud_gateway.openapi import ApiRoute, Operation
from gpucloud_gateway.sse import KEEPALIVE, EventStreamResponse, batches
from gpucloud_gateway.validation import UINT32_MAX

# The `authorization` metadata value of a call, and the request param it came from.
Handler = Callable[[Request], Awaitable[Response]]
Req = TypeVar("Req")
Reply = TypeVar("Reply")
LOGIN = Body(
    "LoginRequest",
    "A user's credentials; answered with a JWT for the management API.",
    [
        String("email", "The user's email.", required=True),
        String("password", "The user's password.", required=True),
    ],
    example={"email": "admin@gpucloud.local", "password": "admin123"},
)
CHANGE_PASSWORD = Body(
    "ChangePasswordRequest",
    "The caller's current password and the one to replace it.",
    [
        String("currentPassword", "The password in use now.", required=True),
        String("newPassword", "The new password (the core sets its rules).", required=True),
    ],
    example={"currentPassword": "admin123", "newPassword": "a-longer-passphrase"},
)
CREATE_USER = Body(
    "CreateUserRequest",
    "A new user (admins only).",
    [
        String("email", "The new user's email.", required=True),
        String("password", "The new user's first password.", required=True),
        String("role", "The new user's role; `member` when left out.", enum=list(js.ROLE_VALUES)),
    ],
    example={"email": "dev@example.com", "password": "a-first-password", "role": "member"},
)
# The bounds of a key's values are the core's (identity/keyspec.py); 0 means its default.
CREATE_KEY = Body(
    "CreateApiKeyRequest",
    "A new API key; its secret is in the answer, once.",
    [
        String("name", "A name to recognise the key by.", required=True),
        Integer("rateLimitPerMinute", "Requests per minute; 0: the default.", 0, UINT32_MAX),
        Integer("tokensPerMinute", "Tokens per minute; 0: the default.", 0, UINT32_MAX),
        Integer("priority", "The queue priority of the key's requests.", 0, UINT32_MAX),
        StringList("allowedModels", "Models the key may use; empty: all of them."),
        DateTime("expiresAt", "When the key stops working (ISO 8601; UTC if naive)."),
    ],
    example={"name": "playground", "rateLimitPerMinute": 60, "allowedModels": ["sim-small"]},
)
# The core clamps the window and bucket to what it keeps; zero means its default.
METRICS_QUERY = Query(
    [
        Integer("windowMinutes", "How far back the charts go, minutes.", 0, UINT32_MAX),
        Integer("bucketSeconds", "The width of one time bucket, seconds.", 0, UINT32_MAX),
    ]
)
_AUTH, _KEYS, _MONITORING = "Account", "API keys", "Monitoring"
_EVENT_STREAM = {"type": "string", "description": "`event: <name>` + `data: <JSON>` pairs."}
# EventSource reconnects after this many milliseconds when the feed drops.
_SSE_RETRY = b"retry: 3000\n\n"


def json_response(body: Mapping[str, object], status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


class ManagementRoutes:
    """Handlers sharing one channel's Auth and Monitor stubs."""

    def __init__(self, channel: grpc.aio.Channel, timeout_s: float, keepalive_s: float) -> None:
        self._auth = auth_pb2_grpc.AuthServiceStub(channel)
        self._monitor = monitor_pb2_grpc.MonitorServiceStub(channel)
        self._timeout_s = timeout_s
        self._keepalive_s = keepalive_s

    def routes(self) -> list[BaseRoute]:
        return [
            ApiRoute(
                "/api/auth/login",
                self.login,
                method="POST",
                doc=Operation("Log in", _AUTH, "none", js.LoginResponse, body=LOGIN),
            ),
            ApiRoute(
                "/api/auth/me",
                self.me,
                method="GET",
                doc=Operation("The caller", _AUTH, "jwt", js.UserResponse),
            ),
            ApiRoute(
                "/api/auth/password",
                self.change_password,
                method="POST",
                doc=Operation(
                    "Change the caller's password",
                    _AUTH,
                    "jwt",
                    js.UserResponse,
                    body=CHANGE_PASSWORD,
                ),
            ),
            ApiRoute(
                "/api/users",
                self.create_user,
                method="POST",
                doc=Operation(
                    "Create a user", _AUTH, "jwt", js.UserResponse, body=CREATE_USER, status=201
                ),
            ),
            ApiRoute(
                "/api/keys",
                self.list_keys,
                method="GET",
                doc=Operation("The caller's API keys (all, for admins)", _KEYS, "jwt", js.KeyList),
            ),
            ApiRoute(
                "/api/keys",
                self.create_key,
                method="POST",
                doc=Operation(
                    "Create an API key", _KEYS, "jwt", js.CreatedKey, body=CREATE_KEY, status=201
                ),
            ),
            ApiRoute(
                "/api/keys/{key_id}",
                self.revoke_key,
                method="DELETE",
                doc=Operation("Revoke an API key", _KEYS, "jwt", js.KeyResponse),
            ),
            ApiRoute(
                "/api/monitoring/workers",
                self.workers,
                method="GET",
                doc=Operation("The workers", _MONITORING, "jwt", js.WorkerList),
            ),
            ApiRoute(
                "/api/monitoring/queue",
                self.queue,
                method="GET",
                doc=Operation("The queue", _MONITORING, "jwt", js.Queue),
            ),
            ApiRoute(
                "/api/monitoring/metrics",
                self.metrics,
                method="GET",
                doc=Operation(
                    "Usage and latency over time",
                    _MONITORING,
                    "jwt",
                    js.Metrics,
                    query=METRICS_QUERY,
                ),
            ),
            ApiRoute(
                "/api/monitoring/events",
                self.events,
                method="GET",
                doc=Operation(
                    "The live feed (server-sent events)",
                    _MONITORING,
                    "jwt_or_query",
                    _EVENT_STREAM,
                    media_type="text/event-stream",
                    events=dict(js.WATCH_EVENTS),
                ),
            ),
        ]

    async def _unary(
        self,
        request: Request,
        method: grpc.aio.UnaryUnaryMultiCallable[Req, Reply],
        message: Req,
        credential: Credential | None,
    ) -> Reply:
        metadata = session_metadata(request, credential)
        try:
            return await method(message, metadata=metadata, timeout=self._timeout_s)
        except grpc.aio.AioRpcError as err:
            request_info(request).error = err.code().name
            raise from_grpc(err, request_info(request).request_id) from None

    async def login(self, request: Request) -> Response:
        body = LOGIN.parse(await request.body())
        message = auth_pb2.LoginRequest(email=body["email"], password=body["password"])
        reply = await self._unary(request, self._auth.Login, message, None)
        answer: js.LoginResponse = {
            "token": reply.token,
            "expiresAt": js.iso(Timestamp(seconds=reply.expires_at)),
            "user": js.user(reply.user),
        }
        return json_response(answer)

    async def me(self, request: Request) -> Response:
        reply = await self._unary(
            request, self._auth.GetMe, auth_pb2.GetMeRequest(), jwt_credential(request)
        )
        return json_response(js.UserResponse(user=js.user(reply.user)))

    async def change_password(self, request: Request) -> Response:
        token = jwt_credential(request)
        body = CHANGE_PASSWORD.parse(await request.body())
        message = auth_pb2.ChangePasswordRequest(
            current_password=body["currentPassword"], new_password=body["newPassword"]
        )
        reply = await self._unary(request, self._auth.ChangePassword, message, token)
        return json_response(js.UserResponse(user=js.user(reply.user)))

    async def create_user(self, request: Request) -> Response:
        token = jwt_credential(request)
        body = CREATE_USER.parse(await request.body())
        message = auth_pb2.CreateUserRequest(
            email=body["email"],
            password=body["password"],
            role=js.ROLE_VALUES[body["role"] or "member"],
        )
        reply = await self._unary(request, self._auth.CreateUser, message, token)
        return json_response(js.UserResponse(user=js.user(reply.user)), status=201)

    async def list_keys(self, request: Request) -> Response:
        reply = await self._unary(
            request, self._auth.ListApiKeys, auth_pb2.ListApiKeysRequest(), jwt_credential(request)
        )
        return json_response(js.KeyList(keys=[js.api_key(k) for k in reply.keys]))

    async def create_key(self, request: Request) -> Response:
        token = jwt_credential(request)
        reply = await self._unary(
            request, self._auth.CreateApiKey, _key_request(await request.body()), token
        )
        created = js.CreatedKey(key=js.api_key(reply.key), secret=reply.secret)
        return json_response(created, status=201)

    async def revoke_key(self, request: Request) -> Response:
        message = auth_pb2.RevokeApiKeyRequest(id=request.path_params["key_id"])
        reply = await self._unary(
            request, self._auth.RevokeApiKey, message, jwt_credential(request)
        )
        return json_response(js.KeyResponse(key=js.api_key(reply.key)))

    async def workers(self, request: Request) -> Response:
        reply = await self._unary(
            request,
            self._monitor.ListWorkers,
            monitor_pb2.ListWorkersRequest(),
            jwt_credential(request),
        )
        return json_response(js.WorkerList(workers=[js.worker(w) for w in reply.workers]))

    async def queue(self, request: Request) -> Response:
        reply = await self._unary(
            request, self._monitor.GetQueue, monitor_pb2.GetQueueRequest(), jwt_credential(request)
        )
        return json_response(js.queue(reply))

    async def metrics(self, request: Request) -> Response:
        token = jwt_credential(request)
        query = METRICS_QUERY.parse(request)
        message = monitor_pb2.GetMetricsRequest(
            window_minutes=query["windowMinutes"] or 0, bucket_seconds=query["bucketSeconds"] or 0
        )
        reply = await self._unary(request, self._monitor.GetMetrics, message, token)
        return json_response(js.metrics(reply))

    async def events(self, request: Request) -> Response:
        """The live feed: `worker`, `stats` and `task_error` events from MonitorService.Watch."""
        token = jwt_credential(request, allow_query=True)
        call = self._monitor.Watch(
            monitor_pb2.WatchRequest(), metadata=session_metadata(request, token)
        )
        try:
            # Auth failures end the call before any event: answer them as plain HTTP errors.
            first = await call.read()
        except grpc.aio.AioRpcError as err:
            request_info(request).error = err.code().name
            raise from_grpc(err, request_info(request).request_id) from None
        except BaseException:
            call.cancel()
            raise
        return EventStreamResponse(self._feed(call, first, request_info(request).request_id))

    async def _feed(self, call: Any, first: Any, request_id: str) -> AsyncGenerator[bytes, None]:
        try:
            yield _SSE_RETRY + _watch_event(first)
            async with contextlib.aclosing(batches(call, self._keepalive_s)) as stream:
                async for batch in stream:
                    yield b"".join(map(_watch_event, batch)) if batch else KEEPALIVE
        except grpc.aio.AioRpcError as err:
            yield sse_error_event(from_grpc(err, request_id))
        finally:
            call.cancel()


def _watch_event(message: Any) -> bytes:
    event = js.watch_event(message)
    if event is None:
        return b""
    name, data = event
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def _key_request(raw: bytes) -> auth_pb2.CreateApiKeyRequest:
    """The key request of a JSON body; its bounds are the core's (identity/keyspec.py)."""
    body = CREATE_KEY.parse(raw)
    message = auth_pb2.CreateApiKeyRequest(
        name=body["name"],
        rate_limit_per_minute=body["rateLimitPerMinute"] or 0,
        tokens_per_minute=body["tokensPerMinute"] or 0,
        priority=body["priority"] or 0,
        allowed_models=body["allowedModels"],
    )
    if body["expiresAt"] is not None:
        message.expires_at.CopyFrom(js.timestamp(body["expiresAt"]))
    return message
