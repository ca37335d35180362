"""The gateway's Starlette app: OpenAI routes, management API, ops endpoints and web/ at `/`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import grpc
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Match, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocketClose

from gpucloud_gateway.config import GatewaySettings
from gpucloud_gateway.errors import ApiError, error_response
from gpucloud_gateway.management import ManagementRoutes
from gpucloud_gateway.metrics import GatewayMetrics
from gpucloud_gateway.middleware import BodyLimit, RequestContext
from gpucloud_gateway.openai_routes import OpenAIRoutes
from gpucloud_gateway.openapi import openapi_route
from gpucloud_gateway.ops import OpsRoutes
from gpucloud_gateway.plan_routes import PlanRoutes
from gpucloud_gateway.responses import ResponsesRoutes

_API_PREFIXES = ("/v1/", "/api/")
# Response headers a browser app may read across origins.
EXPOSED_HEADERS = (
    "x-request-id",
    "x-queue-wait-ms",
    "x-should-retry",
    "retry-after",
    "retry-after-ms",
    *(
        f"x-ratelimit-{what}-{unit}"
        for what in ("limit", "remaining", "reset")
        for unit in ("requests", "tokens")
    ),
)
_PLACEHOLDER = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>gpucloud</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 4rem auto">
<h1>gpucloud</h1>
<p>The gateway is running. The dashboard (web/) is not installed with this build.</p>
<p>OpenAI-compatible API: <code>/v1/models</code>, <code>/v1/chat/completions</code>.
Operations: <a href="/healthz">/healthz</a>, <a href="/readyz">/readyz</a>,
<a href="/metrics">/metrics</a>.</p>
</body></html>
"""


def find_web_dir(configured: Path | None) -> Path | None:
    """web/ as packaged in the wheel (gpucloud_gateway/web), else the repository's web/."""
    here = Path(__file__).resolve().parent
    candidates = [configured] if configured else [here / "web", here.parents[1] / "web"]
    for candidate in candidates:
        if candidate is not None and (candidate / "index.html").is_file():
            return candidate
    return None


# The order methods are listed in an Allow header.
_METHOD_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_STATIC_METHODS = frozenset({"GET", "HEAD"})


def allowed_methods(routes: list[BaseRoute], scope: Scope) -> list[str]:
    """The methods the routes whose path matches `scope` answer, OPTIONS included; [] if none."""
    methods: set[str] = set()
    for route in routes:
        if isinstance(route, Route) and route.methods and route.matches(scope)[0] is not Match.NONE:
            methods |= route.methods
    if not methods:
        return []
    return sorted(methods | {"OPTIONS"}, key=_METHOD_ORDER.index)


def _method_response(method: str, path: str, allowed: list[str]) -> Response:
    """204 with Allow for OPTIONS (no CORS: that is the CORS layer's, when configured), else 405."""
    allow = {"Allow": ", ".join(allowed)}
    if method == "OPTIONS":
        return Response(status_code=204, headers=allow)
    return error_response(
        ApiError(405, f"Method {method} is not allowed on {path}.", headers=allow)
    )


class WebFallback:
    """Everything no route took: a known path with another method gets 405 (or OPTIONS its
    204), both with Allow; unknown API paths a 404 envelope; other paths the dashboard's files."""

    def __init__(self, routes: list[BaseRoute], web_dir: Path | None) -> None:
        self._routes = routes
        self._static = StaticFiles(directory=web_dir, html=True) if web_dir else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        if scope["type"] != "http":
            await WebSocketClose()(scope, receive, send)
            return
        method: str = scope["method"]
        if allowed := allowed_methods(self._routes, scope):
            await _method_response(method, path, allowed)(scope, receive, send)
        elif path.startswith(_API_PREFIXES):
            error = ApiError(404, f"Unknown API endpoint: {path}.", code="unknown_url")
            await error_response(error)(scope, receive, send)
        elif method not in _STATIC_METHODS:
            static = sorted(_STATIC_METHODS | {"OPTIONS"}, key=_METHOD_ORDER.index)
            await _method_response(method, path, static)(scope, receive, send)
        elif self._static is not None:
            await self._static(scope, receive, send)
        elif path == "/":
            await HTMLResponse(_PLACEHOLDER)(scope, receive, send)
        else:
            await error_response(ApiError(404, f"Not found: {path}."))(scope, receive, send)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(ApiError(exc.status_code, exc.detail, headers=exc.headers))


async def _disconnected(request: Request, exc: Exception) -> Response:
    # The client left while sending its body; nobody will read this answer.
    return Response(status_code=499)


def cors(origins: Sequence[str]) -> list[Middleware]:
    """The CORS layer for browser apps served from `origins` ("*" for any); none when empty.

    Credentials travel in the Authorization header, never in cookies, so no
    `allow_credentials`; the headers SDKs read (limits, retry hints, request id) are exposed.
    """
    if not origins:
        return []
    return [
        Middleware(
            CORSMiddleware,
            allow_origins=list(origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["*"],
            expose_headers=list(EXPOSED_HEADERS),
            max_age=600,
        )
    ]


def create_app(
    settings: GatewaySettings, channel: grpc.aio.Channel, *, cors_origins: Sequence[str] = ()
) -> Starlette:
    """The ASGI app; every route shares `channel`, one long-lived grpc.aio channel to the core.
    `cors_origins` turns on CORS for those browser origins; without it there is no CORS policy."""
    metrics = GatewayMetrics()
    api: list[BaseRoute] = [
        *OpenAIRoutes(channel, metrics, settings.keepalive_s).routes(),
        *ResponsesRoutes(channel, metrics, settings.keepalive_s).routes(),
        *ManagementRoutes(channel, settings.core_timeout_s, settings.keepalive_s).routes(),
        *PlanRoutes(channel, settings.core_timeout_s).routes(),
    ]
    api += [*OpsRoutes(channel, metrics, settings.ops_token).routes(), openapi_route()]
    routes: list[BaseRoute] = [
        *api,
        Mount("/", app=WebFallback(api, find_web_dir(settings.web_dir))),
    ]
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(RequestContext),
            *cors(cors_origins),
            Middleware(BodyLimit, max_bytes=settings.max_body_bytes),
        ],
        exception_handlers={
            ApiError: _api_error,
            HTTPException: _http_error,
            ClientDisconnect: _disconnected,
        },
    )
    app.state.metrics = metrics
    return app
