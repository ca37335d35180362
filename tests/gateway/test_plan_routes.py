"""POST /api/plan and GET /api/plan/catalog through the real app against the fake core."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx
import pytest
from gateway_fakes import ADMIN_JWT, MEMBER_JWT
from starlette.applications import Starlette
from starlette.routing import Route

from gpucloud_gateway import plan_routes
from gpucloud_gateway.plan_routes import PlanGate
from gpucloud_sim.plan import PlanRequest, plan

MEMBER = {"authorization": f"Bearer {MEMBER_JWT}"}
ADMIN = {"authorization": f"Bearer {ADMIN_JWT}"}
MODEL = "meta-llama/Llama-3.1-8B-Instruct"
SLO = {"ttftP99Ms": 500, "tpotP99Ms": 50}
# One 4090 per worker at 20 requests/s: two workers meet the SLOs, one does not (~0.1 s).
SMALL = {
    "workloads": [
        {
            "model": MODEL,
            "ratePerSecond": 20,
            "promptTokens": {"mean": 256},
            "outputTokens": {"mean": 64},
        }
    ],
    "slo": SLO,
    "gpus": ["rtx4090"],
    "gpuCounts": [1],
}


def gate_of(app: Starlette) -> PlanGate:
    route = next(r for r in app.routes if isinstance(r, Route) and r.path == "/api/plan")
    gate: PlanGate = route.endpoint.__self__.gate  # type: ignore[attr-defined]
    return gate


def with_workload(**changes: Any) -> dict[str, Any]:
    return {**SMALL, "workloads": [{**SMALL["workloads"][0], **changes}]}


async def test_a_member_gets_the_cheapest_fleet_that_meets_the_slo_and_the_one_too_small(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/api/plan", json=SMALL, headers=MEMBER)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["meetsSlo"] is True
    assert body["slo"] == {"ttftP99Ms": 500.0, "tpotP99Ms": 50.0}
    (pool,) = body["pools"]
    best, smaller = pool["best"], pool["smaller"]
    assert (best["gpu"], best["gpuCount"], best["workers"]) == ("rtx4090", 1, 2)
    assert best["meetsSlo"] is True
    assert best["summary"]["ttftMsP99"] <= 500 and best["summary"]["tpotMsP99"] <= 50
    assert best["headroom"] >= 1.0
    assert body["costPerHour"] == best["costPerHour"] == pytest.approx(2 * 0.69)
    assert smaller["workers"] == 1 and smaller["meetsSlo"] is False
    assert smaller["breaksOn"] in ("ttft_p99", "tpot_p99")
    assert pool["candidates"] and pool["ratePerSecond"] == 20


async def test_prices_and_precision_reach_the_planner(client: httpx.AsyncClient) -> None:
    body = {**SMALL, "prices": {"rtx4090": 1.0}, "precision": "fp8", "maxGpus": 8}
    response = await client.post("/api/plan", json=body, headers=ADMIN)
    assert response.status_code == 200, response.text
    best = response.json()["pools"][0]["best"]
    assert best["precision"] == "fp8"
    assert best["costPerHour"] == pytest.approx(best["gpus"] * 1.0)


async def test_candidates_the_estimate_ruled_out_are_listed_beside_those_simulated(
    client: httpx.AsyncClient,
) -> None:
    body = with_workload(ratePerSecond=10, promptTokens={"mean": 512}, outputTokens={"mean": 128})
    del body["gpus"], body["gpuCounts"]
    response = await client.post("/api/plan", json=body, headers=MEMBER)
    assert response.status_code == 200, response.text
    pool = response.json()["pools"][0]
    simulated = {(c["gpu"], c["gpuCount"]) for c in pool["candidates"]}
    skipped = {(k["gpu"], k["gpuCount"]) for k in pool["skipped"]}
    assert skipped and not simulated & skipped
    assert all(k["estimatedWorkers"] >= 1 for k in pool["skipped"])


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"slo": SLO}, "workloads"),
        ({"workloads": []}, "workloads"),
        (with_workload(ratePerSecond=0), "workloads[0].ratePerSecond"),
        (with_workload(ratePerSecond="fast"), "workloads[0].ratePerSecond"),
        (with_workload(model="gpt-5"), "workloads[0].model"),
        (with_workload(promptTokens={"mean": 0}), "workloads[0].promptTokens.mean"),
        (with_workload(outputTokens={"mean": 64, "cv": 9}), "workloads[0].outputTokens.cv"),
        ({**SMALL, "workloads": SMALL["workloads"] * 2}, "workloads"),
        ({**SMALL, "slo": {"ttftP99Ms": -1}}, "slo.ttftP99Ms"),
        ({**SMALL, "prices": {"tpu": 1.0}}, "prices.tpu"),
        ({**SMALL, "prices": {"h100": -2}}, "prices.h100"),
        ({**SMALL, "gpus": ["b200"]}, "gpus"),
        ({**SMALL, "gpuCounts": [0]}, "gpuCounts"),
        ({**SMALL, "precision": "int4"}, "precision"),
        ({**SMALL, "maxGpus": 0}, "maxGpus"),
    ],
)
async def test_bad_input_is_a_400_naming_the_field(
    client: httpx.AsyncClient, body: dict[str, Any], param: str
) -> None:
    response = await client.post("/api/plan", json=body, headers=MEMBER)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param
    assert error["type"] == "invalid_request_error" and error["message"]
    assert response.headers["x-should-retry"] == "false"


async def test_without_a_valid_jwt_it_is_401_before_any_work(client: httpx.AsyncClient) -> None:
    forged = {"authorization": "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."}
    for headers in ({}, forged):
        planned = await client.post("/api/plan", json={"bad": True}, headers=headers)
        assert planned.status_code == 401
        catalog = await client.get("/api/plan/catalog", headers=headers)
        assert catalog.status_code == 401
        assert set(catalog.json()["error"]) == {"message", "type", "param", "code"}


async def test_a_plan_while_one_runs_is_429_with_retry_after(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    gate = gate_of(app)
    gate.acquire()  # as a running plan does
    try:
        busy = await client.post("/api/plan", json=SMALL, headers=MEMBER)
    finally:
        gate.release()
    assert busy.status_code == 429
    assert busy.json()["error"]["code"] == "plan_busy"
    assert busy.headers["retry-after"] == "2"
    assert busy.headers["retry-after-ms"] == "2000"
    again = await client.post("/api/plan", json=SMALL, headers=MEMBER)
    assert again.status_code == 200


async def test_the_plan_runs_off_the_event_loop_and_holds_its_slot_until_it_ends(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    started, finish = threading.Event(), threading.Event()

    async def slow_plan(request: PlanRequest) -> dict[str, Any]:
        started.set()
        await asyncio.to_thread(finish.wait, 30)
        return plan(request).to_json()

    gate_of(app).runner = slow_plan
    first = asyncio.create_task(client.post("/api/plan", json=SMALL, headers=MEMBER))
    await asyncio.to_thread(started.wait, 30)
    # The loop still answers while the planner's thread is busy...
    catalog = await client.get("/api/plan/catalog", headers=MEMBER)
    assert catalog.status_code == 200
    assert (await client.post("/api/plan", json=SMALL, headers=MEMBER)).status_code == 429
    # ...and a client that leaves does not free the slot: its thread still runs.
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    gate = gate_of(app)
    assert gate.running == 1
    finish.set()
    await gate.drain()
    assert gate.running == 0
    assert (await client.post("/api/plan", json=SMALL, headers=MEMBER)).status_code == 200


async def test_the_catalog_lists_gpu_kinds_prices_models_and_defaults(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/api/plan/catalog", headers=MEMBER)
    assert response.status_code == 200
    body = response.json()
    gpus = {g["key"]: g for g in body["gpus"]}
    assert gpus["h100"]["name"] == "NVIDIA H100 80GB SXM"
    assert gpus["h100"]["pricePerGpuHour"] == 2.99 and gpus["h100"]["fp8"] is True
    assert gpus["a100"]["fp8"] is False
    assert MODEL in [m["id"] for m in body["models"]]
    assert body["precisions"] == ["bf16", "fp8"]
    defaults = body["defaults"]
    assert defaults["slo"] == {"ttftP99Ms": 500.0, "tpotP99Ms": 50.0}
    assert defaults["gpuCounts"] == [1, 2, 4, 8] and defaults["precision"] == "bf16"


async def test_both_routes_are_documented_with_their_shapes(client: httpx.AsyncClient) -> None:
    doc = (await client.get("/openapi.json")).json()
    planned = doc["paths"]["/api/plan"]["post"]
    assert planned["security"] == [{"jwt": []}]
    body = doc["components"]["schemas"]["PlanRequest"]
    assert body["required"] == ["workloads"]
    workload = body["properties"]["workloads"]["items"]["properties"]
    assert {"model", "ratePerSecond", "promptTokens", "outputTokens"} <= set(workload)
    answer = planned["responses"]["200"]["content"]["application/json"]["schema"]
    assert answer == {"$ref": "#/components/schemas/PlanResponse"}
    fleet = doc["components"]["schemas"]["PlanFleet"]["properties"]
    assert {"gpu", "gpuCount", "workers", "costPerHour", "headroom", "breaksOn"} <= set(fleet)
    catalog = doc["paths"]["/api/plan/catalog"]["get"]["responses"]["200"]
    assert catalog["content"]["application/json"]["schema"]["$ref"].endswith("/PlanCatalog")


async def test_a_plan_runs_in_a_process_of_its_own_killed_at_its_deadline(
    app: Starlette, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert gate_of(app).runner is plan_routes.plan_in_process
    # No child process starts, plans and answers within a microsecond.
    monkeypatch.setattr(plan_routes, "PLAN_DEADLINE_S", 1e-6)
    response = await client.post("/api/plan", json=SMALL, headers=MEMBER)
    assert response.status_code == 503
    assert "took too long" in response.json()["error"]["message"]
    assert gate_of(app).running == 0
