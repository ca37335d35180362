"""The capacity planner's answers as the management API's camelCase JSON.

`plan()` answers with `PlanResult.to_json()` (snake_case, as `gpucloud plan --json`
prints it); the dashboard API writes camelCase, so each member is carried over by
name here, and a member the library renames fails loudly instead of vanishing.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypedDict

from gpucloud_sim.cost import PRECISIONS
from gpucloud_sim.gpus import GIB, GPUS
from gpucloud_sim.models import MODELS
from gpucloud_sim.plan import (
    DEFAULT_GPU_COUNTS,
    DEFAULT_PRICES,
    BreaksOn,
    ModelWorkload,
    PlanRequest,
    Slo,
)


class PlanSummary(TypedDict):
    """A fleet's simulated run at the workload's rate; null where there is no such figure."""

    ttftMsP50: float | None
    ttftMsP99: float | None
    tpotMsP50: float | None
    tpotMsP99: float | None
    e2eMsP50: float | None
    outputTokensPerSecond: float | None
    requestsPerSecond: float | None


class PlanFleet(TypedDict):
    """`workers` workers of `gpuCount` GPUs of kind `gpu`. `breaksOn`: the objective it
    misses (or, for the chosen fleet, misses first beyond `headroom` times the rate)."""

    model: str
    gpu: str
    gpuCount: int
    workers: int
    gpus: int
    precision: str
    costPerHour: float
    meetsSlo: bool
    breaksOn: BreaksOn | None
    headroom: float | None
    summary: PlanSummary | None


class PlanLengths(TypedDict):
    mean: float
    cv: float


class PlanSkipped(TypedDict):
    """A candidate never simulated: even an optimistic estimate of its fleet
    (`estimatedWorkers` workers) costs more than the best one."""

    gpu: str
    gpuCount: int
    estimatedWorkers: int


class PlanPool(TypedDict):
    """One model's pool: the cheapest fleet meeting the SLOs (null: none within maxGpus),
    the same kind one GPU or worker smaller, every fleet simulated or ruled out by
    memory or precision (cheapest first), and those the estimate ruled out."""

    model: str
    ratePerSecond: float
    promptTokens: PlanLengths
    outputTokens: PlanLengths
    best: PlanFleet | None
    smaller: PlanFleet | None
    candidates: list[PlanFleet]
    skipped: list[PlanSkipped]


class PlanSlo(TypedDict):
    ttftP99Ms: float
    tpotP99Ms: float


class PlanResponse(TypedDict):
    """The cheapest fleet per model; `costPerHour` adds the pools up (null when a pool has
    no fleet that meets the SLOs). `truncated`: the run budget ended the search early."""

    meetsSlo: bool
    costPerHour: float | None
    slo: PlanSlo
    pools: list[PlanPool]
    runs: int
    truncated: bool


class CatalogGpu(TypedDict):
    key: str
    name: str
    memoryGib: float
    fp8: bool
    pricePerGpuHour: float | None


class CatalogModel(TypedDict):
    id: str
    parameters: int
    maxContext: int


class PlanDefaults(TypedDict):
    ratePerSecond: float
    promptTokens: int
    outputTokens: int
    slo: PlanSlo
    gpuCounts: list[int]
    precision: str
    maxGpus: int


class PlanCatalog(TypedDict):
    """What the plan form offers: GPU kinds with their default $/GPU-hour (illustrative
    list prices; pass your own), models, precisions and the defaults of a request."""

    gpus: list[CatalogGpu]
    models: list[CatalogModel]
    precisions: list[str]
    defaults: PlanDefaults


def _summary(s: dict[str, Any]) -> PlanSummary:
    return {
        "ttftMsP50": s["ttft_ms_p50"],
        "ttftMsP99": s["ttft_ms_p99"],
        "tpotMsP50": s["tpot_ms_p50"],
        "tpotMsP99": s["tpot_ms_p99"],
        "e2eMsP50": s["e2e_ms_p50"],
        "outputTokensPerSecond": s["output_tokens_per_s"],
        "requestsPerSecond": s["requests_per_s"],
    }


def _fleet(f: dict[str, Any]) -> PlanFleet:
    return {
        "model": f["model"],
        "gpu": f["gpu"],
        "gpuCount": f["gpu_count"],
        "workers": f["workers"],
        "gpus": f["gpus"],
        "precision": f["precision"],
        "costPerHour": f["cost_per_hour"],
        "meetsSlo": f["meets_slo"],
        "breaksOn": f["breaks_on"],
        "headroom": f["headroom"],
        "summary": None if f["summary"] is None else _summary(f["summary"]),
    }


def _pool(p: dict[str, Any]) -> PlanPool:
    return {
        "model": p["model"],
        "ratePerSecond": p["rate_per_s"],
        "promptTokens": {"mean": p["prompt_tokens"]["mean"], "cv": p["prompt_tokens"]["cv"]},
        "outputTokens": {"mean": p["output_tokens"]["mean"], "cv": p["output_tokens"]["cv"]},
        "best": None if p["best"] is None else _fleet(p["best"]),
        "smaller": None if p["smaller"] is None else _fleet(p["smaller"]),
        "candidates": [_fleet(c) for c in p["candidates"]],
        "skipped": [
            {
                "gpu": k["gpu"],
                "gpuCount": k["gpu_count"],
                "estimatedWorkers": k["estimated_workers"],
            }
            for k in p["skipped"]
        ],
    }


def plan_response(result: dict[str, Any]) -> PlanResponse:
    """`PlanResult.to_json()` in camelCase."""
    return {
        "meetsSlo": result["meets_slo"],
        "costPerHour": result["cost_per_hour"],
        "slo": {
            "ttftP99Ms": result["slo"]["ttft_p99_ms"],
            "tpotP99Ms": result["slo"]["tpot_p99_ms"],
        },
        "pools": [_pool(p) for p in result["pools"]],
        "runs": result["runs"],
        "truncated": result["truncated"],
    }


def _default(cls: Any, name: str) -> Any:
    """A field's default in the library, so the form starts where `gpucloud plan` does."""
    return next(f.default for f in dataclasses.fields(cls) if f.name == name)


def catalog(default_rate: float) -> PlanCatalog:
    slo = Slo()
    return {
        "gpus": [
            {
                "key": gpu.key,
                "name": gpu.name,
                "memoryGib": round(gpu.memory_bytes / GIB, 1),
                "fp8": gpu.dense_fp8_flops is not None,
                "pricePerGpuHour": DEFAULT_PRICES.get(gpu.key),
            }
            for gpu in GPUS.values()
        ],
        "models": [
            {"id": m.id, "parameters": m.parameters, "maxContext": m.max_context} for m in MODELS
        ],
        "precisions": list(PRECISIONS),
        "defaults": {
            "ratePerSecond": default_rate,
            "promptTokens": _default(ModelWorkload, "prompt_tokens").mean,
            "outputTokens": _default(ModelWorkload, "output_tokens").mean,
            "slo": {"ttftP99Ms": slo.ttft_p99_ms, "tpotP99Ms": slo.tpot_p99_ms},
            "gpuCounts": list(DEFAULT_GPU_COUNTS),
            "precision": _default(PlanRequest, "precision"),
            "maxGpus": _default(PlanRequest, "max_gpus"),
        },
    }
