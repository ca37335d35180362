"""The capacity planner on the virtual clock: cheapest fleet, the one just too small, bounds."""

from __future__ import annotations

import json

import pytest

from gpucloud_sim import profile
from gpucloud_sim.plan import (
    DEFAULT_PRICES,
    Lengths,
    ModelWorkload,
    PlanRequest,
    Slo,
    plan,
)
from gpucloud_sim.plan_json import plan_request_from_json
from gpucloud_sim.plan_request import MAX_RUNS
from gpucloud_sim.results import Summary

LLAMA_8B = "meta-llama/Meta-Llama-3-8B-Instruct"
SLO = Slo(ttft_p99_ms=500, tpot_p99_ms=50)


def meets(summary: Summary, slo: Slo) -> bool:
    return summary.ttft_ms_p99 <= slo.ttft_p99_ms and summary.tpot_ms_p99 <= slo.tpot_p99_ms


def test_plan_returns_a_fleet_that_meets_the_slos_and_one_gpu_smaller_that_does_not() -> None:
    # 60 requests/s of 512 in / 128 out is more than one H100 holds within the SLOs.
    workload = ModelWorkload(LLAMA_8B, 60.0, Lengths(512), Lengths(128))
    result = plan(PlanRequest((workload,), SLO, gpus=("h100",), gpu_counts=(1,)))

    pool = result.pools[0]
    best, smaller = pool.best, pool.smaller
    assert best is not None
    assert smaller is not None
    assert (best.gpu, best.gpu_count) == (smaller.gpu, smaller.gpu_count) == ("h100", 1)
    assert smaller.gpus == best.gpus - 1
    assert best.meets_slo
    assert not smaller.meets_slo
    # Simulated again, independently of the planner: the same verdicts.
    for fleet, verdict in ((best, True), (smaller, False)):
        run = profile("h100", LLAMA_8B, 512, 128, rate=60.0, requests=400, workers=fleet.workers)
        assert meets(run.summary, SLO) is verdict
        assert run.summary == fleet.summary
    assert result.cost_per_hour == pytest.approx(best.workers * DEFAULT_PRICES["h100"])


def test_the_best_fleet_is_the_cheapest_that_meets_the_slos() -> None:
    workload = ModelWorkload(LLAMA_8B, 10.0)
    pool = plan(PlanRequest((workload,), SLO)).pools[0]
    assert pool.best is not None
    meeting = [c for c in pool.candidates if c.meets_slo]
    assert pool.best in meeting
    assert pool.best.cost_per_hour == min(c.cost_per_hour for c in meeting)
    assert pool.best.headroom is not None
    assert pool.best.headroom >= 1.0


def test_a_cheaper_price_moves_the_plan_to_that_gpu() -> None:
    workload = ModelWorkload(LLAMA_8B, 10.0)
    prices = {**DEFAULT_PRICES, "h100": 0.10}
    pool = plan(PlanRequest((workload,), SLO, prices=prices)).pools[0]
    assert pool.best is not None
    assert pool.best.gpu == "h100"


def test_each_model_gets_its_own_pool_and_the_costs_add_up() -> None:
    workloads = (
        ModelWorkload(LLAMA_8B, 5.0),
        ModelWorkload("Qwen/Qwen2.5-14B-Instruct", 2.0, Lengths(256, 0.5), Lengths(64, 0.5)),
    )
    result = plan(PlanRequest(workloads, SLO, gpus=("h100", "a100")))
    assert [pool.workload.model for pool in result.pools] == [w.model for w in workloads]
    bests = [pool.best for pool in result.pools]
    assert all(best is not None and best.meets_slo for best in bests)
    assert result.cost_per_hour == pytest.approx(sum(b.cost_per_hour for b in bests if b))


def test_a_model_that_fits_no_allowed_gpu_is_ruled_out_on_memory() -> None:
    workload = ModelWorkload("meta-llama/Llama-3.1-70B-Instruct", 1.0)
    result = plan(PlanRequest((workload,), SLO, gpus=("rtx4090",), gpu_counts=(1, 2)))
    pool = result.pools[0]
    assert pool.best is None
    assert not result.meets_slo
    assert result.cost_per_hour is None
    assert [(c.gpu, c.breaks_on, c.workers) for c in pool.candidates] == [("rtx4090", "memory", 0)]


def test_fp8_rules_out_gpus_without_fp8() -> None:
    workload = ModelWorkload(LLAMA_8B, 2.0)
    pool = plan(PlanRequest((workload,), SLO, gpus=("a100", "h100"), precision="fp8")).pools[0]
    assert pool.best is not None
    assert pool.best.gpu == "h100"
    assert ("a100", "precision") in [(c.gpu, c.breaks_on) for c in pool.candidates]


def test_an_slo_no_gpu_can_meet_gives_no_fleet_and_says_what_breaks() -> None:
    workload = ModelWorkload(LLAMA_8B, 1.0)
    result = plan(PlanRequest((workload,), Slo(ttft_p99_ms=500, tpot_p99_ms=2.0)))
    pool = result.pools[0]
    assert pool.best is None
    assert pool.candidates
    assert {c.breaks_on for c in pool.candidates} == {"tpot_p99"}


def test_a_plan_is_deterministic_and_bounded() -> None:
    request = PlanRequest(
        (ModelWorkload(LLAMA_8B, 30.0, Lengths(1024, 0.5), Lengths(256, 0.5)),), SLO
    )
    first, second = plan(request), plan(request)
    assert first == second
    assert 0 < first.runs <= MAX_RUNS


def test_the_json_form_is_plain_json() -> None:
    result = plan(PlanRequest((ModelWorkload(LLAMA_8B, 5.0),), SLO, gpus=("a100",)))
    document = json.loads(json.dumps(result.to_json()))
    assert document["meets_slo"] is True
    pool = document["pools"][0]
    assert pool["model"] == LLAMA_8B
    assert set(pool["best"]) >= {"gpu", "gpu_count", "workers", "cost_per_hour", "headroom"}
    assert all(set(s) == {"gpu", "gpu_count", "estimated_workers"} for s in pool["skipped"])
    assert set(pool["best"]["summary"]) == {
        "ttft_ms_p50", "ttft_ms_p99", "tpot_ms_p50", "tpot_ms_p99", "e2e_ms_p50",
        "output_tokens_per_s", "requests_per_s",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"workloads": ()}, "at least one model"),
        ({"precision": "int4"}, "unknown precision"),
        ({"gpus": ("tpu",)}, "unknown GPU"),
        ({"gpu_counts": (0,)}, ">= 1"),
        ({"requests": 10}, "requests per run"),
        ({"gpu_counts": (8,), "max_gpus": 4}, "above the max GPUs"),
        ({"prices": {"h100": 1.0}, "gpus": ("a100",)}, "price for 'a100'"),
    ],
)
def test_a_bad_plan_request_is_a_clear_value_error(change: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {"workloads": (ModelWorkload(LLAMA_8B, 1.0),), **change}
    with pytest.raises(ValueError, match=message):
        PlanRequest(**fields)  # type: ignore[arg-type]


def test_a_bad_workload_is_a_clear_value_error() -> None:
    with pytest.raises(ValueError, match="unknown model"):
        ModelWorkload("gpt-5", 1.0)
    with pytest.raises(ValueError, match="rate"):
        ModelWorkload(LLAMA_8B, 0.0)
    with pytest.raises(ValueError, match="mean >= 1"):
        Lengths(0)


def test_recorded_sizes_are_replayed_instead_of_the_distributions() -> None:
    workload = ModelWorkload("Meta-Llama-3-8B-Instruct", 1.0, sizes=((100, 10), (300, 30)))
    assert workload.model == LLAMA_8B
    assert set(workload.draw(100, seed=1)) == {(100, 10), (300, 30)}
    assert workload.mean_tokens() == (200.0, 20.0)


def test_a_json_document_becomes_the_same_plan_request() -> None:
    document = {
        "workloads": [
            {"model": "Meta-Llama-3-8B-Instruct", "rate_per_s": 10, "prompt_tokens": 512,
             "output_tokens": {"mean": 128, "cv": 0.5}},
        ],
        "slo": {"ttft_p99_ms": 400},
        "prices": {"H100": 2.49},
        "gpus": ["h100"],
        "gpu_counts": [1, 2],
    }  # fmt: skip
    request = plan_request_from_json(json.loads(json.dumps(document)))
    assert request == PlanRequest(
        (ModelWorkload(LLAMA_8B, 10.0, Lengths(512), Lengths(128, 0.5)),),
        Slo(400.0, 50.0),
        prices={**DEFAULT_PRICES, "h100": 2.49},
        gpus=("h100",),
        gpu_counts=(1, 2),
    )


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "request: expected an object"),
        ({"workloads": []}, "give 1 to"),
        ({"workloads": [{"model": LLAMA_8B}]}, r"workloads\[0\].rate_per_s: expected a number"),
        ({"workloads": [{"model": LLAMA_8B, "rate_per_s": "fast"}]}, "rate_per_s"),
        ({"workloads": [{"model": LLAMA_8B, "rate_per_s": 1, "sizes": [[1]]}]}, "sizes"),
        ({"workloads": [{"model": LLAMA_8B, "rate_per_s": 1}], "max_gpus": 1.5}, "max_gpus"),
        ({"workloads": [{"model": LLAMA_8B, "rate_per_s": 1}], "budget": 1}, "unknown field"),
    ],
)
def test_a_bad_json_document_is_a_value_error_naming_the_field(
    document: object, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        plan_request_from_json(document)
