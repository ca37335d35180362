"""The management REST API against a fake core: shapes, JWT forwarding, BOLA, secrets."""

from __future__ import annotations

import httpx
import orjson
from gateway_fakes import ADMIN_JWT, MEMBER_JWT, MODEL

ADMIN = {"authorization": f"Bearer {ADMIN_JWT}"}
MEMBER = {"authorization": f"Bearer {MEMBER_JWT}"}


async def test_login_returns_token_expiry_and_user(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/auth/login", json={"email": "admin@test", "password": "admin123"}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token"] == ADMIN_JWT
    assert body["expiresAt"] == "1970-01-01T00:01:39.000Z"
    assert body["user"] == {
        "id": "u-admin",
        "email": "admin@test",
        "role": "admin",
        "mustChangePassword": False,
        "createdAt": None,
    }


async def test_wrong_password_is_401(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/auth/login", json={"email": "admin@test", "password": "x"})
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "wrong email or password"


async def test_login_requires_email_and_password(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/auth/login", json={"email": "admin@test"})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "password"


async def test_missing_or_forged_jwt_is_401(client: httpx.AsyncClient) -> None:
    forged = {"authorization": "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."}
    for path in ("/api/auth/me", "/api/keys", "/api/monitoring/workers", "/api/monitoring/queue"):
        for headers in ({}, forged):
            response = await client.get(path, headers=headers)
            assert response.status_code == 401, path
            assert set(response.json()["error"]) == {"message", "type", "param", "code"}


async def test_me_forwards_the_jwt(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/auth/me", headers=MEMBER)
    assert response.json()["user"]["email"] == "member@test"


async def test_key_lifecycle_shows_the_secret_once(client: httpx.AsyncClient) -> None:
    created = await client.post(
        "/api/keys",
        headers=ADMIN,
        json={
            "name": "prod",
            "rateLimitPerMinute": 120,
            "priority": 7,
            "allowedModels": [MODEL],
            "expiresAt": "2030-01-01T00:00:00Z",
        },
    )
    assert created.status_code == 201
    body = created.json()
    secret = body["secret"]
    key = body["key"]
    assert key["rateLimitPerMinute"] == 120
    assert key["priority"] == 7
    assert key["allowedModels"] == [MODEL]
    assert key["expiresAt"] == "2030-01-01T00:00:00.000Z"
    assert key["createdAt"] == "2023-11-14T22:13:20.000Z"
    assert key["revokedAt"] is None
    assert key["last4"] == "abcd"
    listed = await client.get("/api/keys", headers=ADMIN)
    assert secret not in listed.text
    assert "secret" not in orjson.loads(listed.content)["keys"][0]
    revoked = await client.delete(f"/api/keys/{key['id']}", headers=ADMIN)
    assert revoked.status_code == 200
    assert revoked.json()["key"]["revokedAt"] is not None


async def test_another_users_key_is_404(client: httpx.AsyncClient) -> None:
    created = await client.post("/api/keys", headers=ADMIN, json={"name": "admin's"})
    key_id = created.json()["key"]["id"]
    response = await client.delete(f"/api/keys/{key_id}", headers=MEMBER)
    assert response.status_code == 404
    assert key_id not in (await client.get("/api/keys", headers=MEMBER)).text


async def test_key_creation_is_validated(client: httpx.AsyncClient) -> None:
    """Shape errors are the gateway's; bounds are the core's key spec, naming the same field."""
    cases = [
        ({}, "name"),
        ({"name": 7}, "name"),
        ({"name": "k", "rateLimitPerMinute": -1}, "rateLimitPerMinute"),
        ({"name": "k", "allowedModels": "all"}, "allowedModels"),
        ({"name": "k", "expiresAt": "tomorrow"}, "expiresAt"),
        ({"name": "  "}, "name"),
        ({"name": "k", "rateLimitPerMinute": 10_001}, "rateLimitPerMinute"),
        ({"name": "k", "tokensPerMinute": 2_000_000_000}, "tokensPerMinute"),
        ({"name": "k", "priority": 11}, "priority"),
        ({"name": "k", "expiresAt": "2000-01-01T00:00:00Z"}, "expiresAt"),
        ({"name": "k", "allowedModels": [""]}, "allowedModels"),
    ]
    for body, param in cases:
        response = await client.post("/api/keys", headers=ADMIN, json=body)
        assert response.status_code == 400, body
        assert response.json()["error"]["param"] == param


async def test_a_member_asking_above_the_defaults_is_403_naming_the_field(
    client: httpx.AsyncClient,
) -> None:
    for body, param in (
        ({"name": "k", "priority": 7}, "priority"),
        ({"name": "k", "rateLimitPerMinute": 61}, "rateLimitPerMinute"),
    ):
        response = await client.post("/api/keys", headers=MEMBER, json=body)
        assert response.status_code == 403, response.text
        error = response.json()["error"]
        assert (error["type"], error["param"]) == ("permission_error", param)


async def test_monitoring_endpoints_use_camel_case(client: httpx.AsyncClient) -> None:
    workers = (await client.get("/api/monitoring/workers", headers=ADMIN)).json()["workers"]
    assert workers[0]["id"] == "w-1"
    assert workers[0]["state"] == "online"
    assert workers[0]["gpus"][0]["memoryTotalBytes"] == 80 << 30
    assert workers[0]["metrics"][0]["utilizationPercent"] == 42.5
    assert workers[0]["metrics"][0]["temperatureCelsius"] is None
    assert workers[0]["lastHeartbeat"] == "2023-11-14T22:13:20.000Z"
    queue = (await client.get("/api/monitoring/queue", headers=ADMIN)).json()
    assert queue == {
        "depth": 3,
        "capacity": 1000,
        "byPriority": [{"priority": 5, "depth": 3}],
        "oldestWaitMs": 0,
        "recentWaitsMs": [1, 2],
        "running": 2,
    }
    metrics = await client.get("/api/monitoring/metrics?windowMinutes=30", headers=ADMIN)
    body = metrics.json()
    assert body["buckets"][0]["requests"] == 30
    assert body["byModel"][0]["promptTokens"] == 20
    assert body["timeToFirstToken"] == {"p50": 0.0, "p90": 0.0, "p99": 0.0}
    for bad in ("-1", "soon"):
        response = await client.get(f"/api/monitoring/metrics?windowMinutes={bad}", headers=ADMIN)
        assert response.status_code == 400
        assert response.json()["error"]["param"] == "windowMinutes"


async def test_event_feed_streams_named_events_with_token_in_query(live_url: str) -> None:
    async with (
        httpx.AsyncClient(base_url=live_url) as http,
        http.stream("GET", f"/api/monitoring/events?token={ADMIN_JWT}") as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        names: list[str] = []
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                names.append(line.removeprefix("event: "))
            if len(names) >= 3:
                break
    assert names[0] == "worker"
    assert names[1:] == ["stats", "stats"]


async def test_event_feed_without_token_is_401(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/monitoring/events")
    assert response.status_code == 401
    response = await client.get("/api/monitoring/events?token=forged")
    assert response.status_code == 401
