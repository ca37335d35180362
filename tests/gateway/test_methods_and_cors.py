"""Methods a route does not answer: 405 with Allow, OPTIONS 204 with Allow; CORS only when asked."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import httpx
import pytest
from gateway_fakes import GOOD_KEY

from gpucloud_gateway import config
from gpucloud_gateway.app import create_app
from gpucloud_gateway.config import GatewaySettings

ORIGIN = "https://playground.example"


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/v1/chat/completions", "POST, OPTIONS"),
        ("PUT", "/api/v1/chat/completions", "POST, OPTIONS"),
        ("POST", "/v1/models", "GET, HEAD, OPTIONS"),
        ("DELETE", "/v1/models/sim-small", "GET, HEAD, OPTIONS"),
        ("DELETE", "/api/keys", "GET, HEAD, POST, OPTIONS"),
        ("GET", "/api/keys/k1", "DELETE, OPTIONS"),
        ("GET", "/api/auth/login", "POST, OPTIONS"),
        ("POST", "/api/monitoring/events", "GET, HEAD, OPTIONS"),
        ("POST", "/healthz", "GET, HEAD, OPTIONS"),
        ("PATCH", "/metrics", "GET, HEAD, OPTIONS"),
        ("POST", "/", "GET, HEAD, OPTIONS"),
    ],
)
async def test_wrong_method_is_405_with_allow_in_the_envelope(
    client: httpx.AsyncClient, method: str, path: str, allow: str
) -> None:
    response = await client.request(method, path)
    assert response.status_code == 405, response.text
    assert response.headers["allow"] == allow
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert method in error["message"]
    assert response.headers["x-should-retry"] == "false"


@pytest.mark.parametrize(
    ("path", "allow"),
    [
        ("/v1/chat/completions", "POST, OPTIONS"),
        ("/v1/models", "GET, HEAD, OPTIONS"),
        ("/api/keys", "GET, HEAD, POST, OPTIONS"),
        ("/api/keys/k1", "DELETE, OPTIONS"),
        ("/readyz", "GET, HEAD, OPTIONS"),
    ],
)
async def test_options_is_204_with_allow_and_no_cors_by_default(
    client: httpx.AsyncClient, path: str, allow: str
) -> None:
    response = await client.options(path, headers={"origin": ORIGIN})
    assert response.status_code == 204
    assert response.headers["allow"] == allow
    assert response.content == b""
    assert not [h for h in response.headers if h.startswith("access-control-")]


async def test_options_on_an_unknown_api_path_is_404(client: httpx.AsyncClient) -> None:
    response = await client.options("/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_url"


async def test_preflight_gets_no_cors_grant_by_default(client: httpx.AsyncClient) -> None:
    response = await client.options(
        "/v1/chat/completions",
        headers={"origin": ORIGIN, "access-control-request-method": "POST"},
    )
    assert "access-control-allow-origin" not in response.headers


@pytest.fixture
async def cors_client(
    settings: GatewaySettings, channel: grpc.aio.Channel
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, channel, cors_origins=[ORIGIN])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as c:
        yield c


async def test_configured_origins_get_preflight_and_exposed_headers(
    cors_client: httpx.AsyncClient,
) -> None:
    preflight = await cors_client.options(
        "/v1/chat/completions",
        headers={
            "origin": ORIGIN,
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization, content-type, x-stainless-os",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "authorization" in preflight.headers["access-control-allow-headers"]
    assert "access-control-allow-credentials" not in preflight.headers
    models = await cors_client.get(
        "/v1/models", headers={"origin": ORIGIN, "authorization": f"Bearer {GOOD_KEY}"}
    )
    assert models.status_code == 200
    assert models.headers["access-control-allow-origin"] == ORIGIN
    exposed = models.headers["access-control-expose-headers"]
    assert "x-request-id" in exposed and "x-ratelimit-remaining-requests" in exposed


async def test_other_origins_get_no_grant(cors_client: httpx.AsyncClient) -> None:
    preflight = await cors_client.options(
        "/v1/chat/completions",
        headers={"origin": "https://evil.example", "access-control-request-method": "POST"},
    )
    assert preflight.status_code == 400
    assert "access-control-allow-origin" not in preflight.headers
    models = await cors_client.get(
        "/v1/models",
        headers={"origin": "https://evil.example", "authorization": f"Bearer {GOOD_KEY}"},
    )
    assert "access-control-allow-origin" not in models.headers
    plain = await cors_client.options("/v1/models")
    assert plain.status_code == 204
    assert plain.headers["allow"] == "GET, HEAD, OPTIONS"


def test_allowed_origins_come_from_the_environment_or_the_flag() -> None:
    env = {"GPUCLOUD_CORS_ALLOWED_ORIGINS": "https://a.example/, https://b.example:8443"}
    assert config.parse([], env).cors_allowed_origins == (
        "https://a.example",
        "https://b.example:8443",
    )
    assert config.parse(["--cors-allowed-origins", "*"], env).cors_allowed_origins == ("*",)
    assert config.parse([], {}).cors_allowed_origins == ()


def test_an_origin_without_a_scheme_is_refused() -> None:
    with pytest.raises(SystemExit):
        config.parse(["--cors-allowed-origins", "a.example"], {})
