"""Health, readiness, Prometheus metrics and the static dashboard."""

from __future__ import annotations

from pathlib import Path

import grpc
import httpx
from gateway_fakes import ADMIN_JWT, GOOD_KEY, MODEL, FakeCore
from grpc_health.v1 import health_pb2
from starlette.applications import Starlette

from gpucloud_gateway.app import create_app, find_web_dir
from gpucloud_gateway.config import GatewaySettings

AUTH = {"authorization": f"Bearer {GOOD_KEY}"}


async def test_healthz_is_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.json() == {"status": "ok"}


async def test_readyz_follows_the_core_health(
    client: httpx.AsyncClient, fake_core: FakeCore
) -> None:
    assert (await client.get("/readyz")).status_code == 200
    await fake_core.health.set(
        "gpucloud.v1.SchedulerService", health_pb2.HealthCheckResponse.NOT_SERVING
    )
    response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["reason"] == "no worker online"
    await fake_core.server.stop(None)
    response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["reason"].startswith("core unreachable")


async def test_readyz_counts_online_workers_with_an_ops_token(
    settings: GatewaySettings, channel: grpc.aio.Channel
) -> None:
    app = create_app(
        GatewaySettings(core_address=settings.core_address, ops_token=ADMIN_JWT), channel
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://g") as c:
        response = await c.get("/readyz")
    assert response.json() == {"status": "ready", "workersOnline": 1}


async def test_metrics_count_requests_tokens_and_latency(client: httpx.AsyncClient) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "x"}]}
    await client.post("/v1/chat/completions", headers=AUTH, json=body)
    await client.post("/v1/chat/completions", headers=AUTH, json={**body, "stream": True})
    await client.post("/v1/chat/completions", headers=AUTH, json={**body, "model": "nope"})
    text = (await client.get("/metrics")).text
    assert f'gpucloud_requests_total{{model="{MODEL}",status="200",stream="false"}} 1.0' in text
    assert f'gpucloud_requests_total{{model="{MODEL}",status="200",stream="true"}} 1.0' in text
    assert 'gpucloud_requests_total{model="",status="404",stream="false"} 1.0' in text
    assert f'gpucloud_tokens_total{{kind="completion",model="{MODEL}"}} 6.0' in text
    assert "gpucloud_time_to_first_token_seconds_bucket" in text
    assert "gpucloud_request_duration_seconds_count" in text
    assert "gpucloud_workers{" not in text  # no credential: no cluster gauges


async def test_metrics_include_cluster_gauges_with_the_scrapers_token(
    client: httpx.AsyncClient,
) -> None:
    text = (await client.get("/metrics", headers={"authorization": f"Bearer {ADMIN_JWT}"})).text
    assert 'gpucloud_workers{state="online"} 1.0' in text
    assert "gpucloud_queue_depth 3.0" in text
    assert (
        'gpucloud_gpu_utilization_percent{gpu="NVIDIA A100 80GB",index="0",worker="w-1"} 42.5'
        in text
    )
    assert 'gpucloud_gpu_memory_total_bytes{gpu="NVIDIA A100 80GB",index="0",worker="w-1"}' in text


async def test_dashboard_is_served_at_root(tmp_path: Path, channel: grpc.aio.Channel) -> None:
    (tmp_path / "index.html").write_text("<h1>dash</h1>")
    (tmp_path / "app.js").write_text("console.log(1)")
    app: Starlette = create_app(GatewaySettings(web_dir=tmp_path), channel)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://g") as c:
        assert (await c.get("/")).text == "<h1>dash</h1>"
        assert (await c.get("/app.js")).status_code == 200
        assert (await c.get("/missing.js")).status_code == 404
        assert (await c.get("/v1/missing")).json()["error"]["code"] == "unknown_url"


async def test_placeholder_page_without_a_dashboard(
    tmp_path: Path, channel: grpc.aio.Channel
) -> None:
    assert find_web_dir(tmp_path) is None
    app: Starlette = create_app(GatewaySettings(web_dir=tmp_path), channel)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://g") as c:
        response = await c.get("/")
    assert response.status_code == 200
    assert "gpucloud" in response.text


def test_repository_web_dir_is_found() -> None:
    found = find_web_dir(None)
    assert found is not None
    assert (found / "index.html").is_file()
