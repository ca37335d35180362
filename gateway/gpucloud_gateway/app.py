"""The gateway's Starlette app: OpenAI routes, management API, ops endpoints and web/ at `/`."""

from __future__ import annotations

from pathlib import Path

import grpc
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Match, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from gpucloud_gateway.config import GatewaySettings
from gpucloud_gateway.errors import ApiError, error_response
from gpucloud_gateway.management import ManagementRoutes
from gpucloud_gateway.metrics import GatewayMetrics
from gpucloud_gateway.middleware import BodyLimit, RequestContext
from gpucloud_gateway.openai_routes import OpenAIRoutes
from gpucloud_gateway.ops import OpsRoutes

_API_PREFIXES = ("/v1/", "/api/")
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


class WebFallback:
    """Everything no route took: unknown API paths get the JSON envelope (404, or 405 when
    the path exists with another method); other paths are the dashboard's files."""

    def __init__(self, api_routes: list[BaseRoute], web_dir: Path | None) -> None:
        self._api_routes = api_routes
        self._static = StaticFiles(directory=web_dir, html=True) if web_dir else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        if scope["type"] == "http" and path.startswith(_API_PREFIXES):
            partial = any(r.matches(scope)[0] is Match.PARTIAL for r in self._api_routes)
            error = (
                ApiError(405, f"Method {scope['method']} is not allowed on {path}.")
                if partial
                else ApiError(404, f"Unknown API endpoint: {path}.", code="unknown_url")
            )
            await error_response(error)(scope, receive, send)
            return
        if self._static is not None:
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


def create_app(settings: GatewaySettings, channel: grpc.aio.Channel) -> Starlette:
    """The ASGI app; every route shares `channel`, one long-lived grpc.aio channel to the core."""
    metrics = GatewayMetrics()
    api: list[BaseRoute] = [
        *OpenAIRoutes(channel, metrics, settings.keepalive_s).routes(),
        *ManagementRoutes(channel, settings.core_timeout_s, settings.keepalive_s).routes(),
    ]
    routes: list[BaseRoute] = [
        *api,
        *OpsRoutes(channel, metrics, settings.ops_token).routes(),
        Mount("/", app=WebFallback(api, find_web_dir(settings.web_dir))),
    ]
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(RequestContext),
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
