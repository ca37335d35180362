"""The fleet simulator's dispatch rules on the virtual clock: prefix-aware dispatch, as the
core does it, against least-loaded. Deterministic: seeded arrivals, no wall clock."""

from __future__ import annotations

import pytest

from gpucloud_sim import GpuEngine, ProfileResult, Workload, find_gpu, find_model, simulate_fleet
from gpucloud_sim.fleet import Dispatch

MODEL = find_model("meta-llama/Llama-3.1-8B-Instruct")


def system_prompts(prompts: int, rate: float, requests: int) -> Workload:
    """2,048-token system prompts, one of `prompts` per request, plus a short question."""
    return Workload(
        prompt_tokens=2048 + 96,
        output_tokens=64,
        requests=requests,
        rate=rate,
        shared_prefix_tokens=2048,
        prefix_groups=prompts,
        seed=3,
    )


def run(gpu: str, workload: Workload, dispatch: Dispatch, slots: int) -> ProfileResult:
    engines = [GpuEngine(find_gpu(gpu), [MODEL]) for _ in range(4)]
    return simulate_fleet(engines, MODEL, workload, dispatch=dispatch, slots=slots)


def mean_ttft_ms(result: ProfileResult) -> float:
    return sum(r.ttft_ms for r in result.requests) / len(result.requests)


def test_requests_draw_one_of_the_system_prompts() -> None:
    workload = system_prompts(4, 10.0, 100)
    leading = {workload.keys(i)[0] for i in range(100)}
    assert len(leading) == 4
    assert workload.keys(7) == system_prompts(4, 10.0, 100).keys(7)  # seeded
    assert len(workload.keys(7)) == (2048 + 96) // 16
    assert workload.keys(7)[:128] != workload.keys(7)[128:]


def test_prefix_dispatch_prefills_each_system_prompt_once_and_cuts_ttft() -> None:
    workload = system_prompts(4, 20.0, 200)
    plain = run("h100", workload, "least_loaded", 64)
    aware = run("h100", workload, "prefix", 64)
    misses = [r for r in aware.requests if r.cached_tokens < 2048]
    assert len(misses) == 4  # each prompt's first request; least-loaded warms every GPU
    assert sum(r.cached_tokens < 2048 for r in plain.requests) > 4
    assert mean_ttft_ms(aware) < mean_ttft_ms(plain)


def test_prefix_dispatch_keeps_prompts_cached_when_one_gpu_cannot_hold_them_all() -> None:
    workload = system_prompts(16, 5.0, 400)  # 16 x 2,048 tokens: most of a 4090's KV cache
    plain = run("rtx4090", workload, "least_loaded", 16)
    aware = run("rtx4090", workload, "prefix", 16)
    cached = [sum(r.cached_tokens for r in x.requests) for x in (plain, aware)]
    assert cached[1] > cached[0]
    assert mean_ttft_ms(aware) < 0.8 * mean_ttft_ms(plain)


def test_a_prompt_sticks_to_one_engine_at_light_load() -> None:
    aware = run("h100", system_prompts(1, 2.0, 50), "prefix", 64)
    assert {r.worker for r in aware.requests} == {aware.requests[0].worker}
    plain = run("h100", system_prompts(1, 2.0, 50), "least_loaded", 64)
    assert len({r.worker for r in plain.requests}) == 4


def test_least_loaded_is_the_default() -> None:
    workload = system_prompts(4, 20.0, 100)
    engines = [GpuEngine(find_gpu("h100"), [MODEL]) for _ in range(4)]
    default = simulate_fleet(engines, MODEL, workload)
    assert default.requests == run("h100", workload, "least_loaded", 1024).requests


@pytest.mark.parametrize("dispatch", ["least_loaded", "prefix"])
def test_with_slots_the_rest_wait_and_every_request_ends(dispatch: Dispatch) -> None:
    workload = Workload(prompt_tokens=512, output_tokens=32, requests=60, concurrency=60)
    result = run("h100", workload, dispatch, 2)
    assert len(result.requests) == 60
    assert max(r.ttft_ms for r in result.requests) > 10 * min(r.ttft_ms for r in result.requests)
