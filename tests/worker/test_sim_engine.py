"""The engine timeline on the virtual clock: batching, chunked prefill, KV blocks, preemption."""

from __future__ import annotations

import pytest

from gpucloud_sim import cost, find_gpu, find_model
from gpucloud_sim.engine import ContextTooLong, GpuEngine
from gpucloud_sim.kv import BLOCK_TOKENS, BlockPool
from gpucloud_sim.models import ModelSpec
from gpucloud_sim.profile import profile
from gpucloud_sim.sched import EngineConfig

LLAMA_8B = find_model("meta-llama/Llama-3.1-8B-Instruct")
LLAMA_70B = find_model("meta-llama/Llama-3.1-70B-Instruct")


def run_to_end(engine: GpuEngine) -> int:
    """Steps until no sequence is live; checks the KV cache is never over-committed."""
    steps = 0
    while engine.step() is not None:
        steps += 1
        assert engine.kv_used_bytes() <= engine.kv_bytes
    return steps


def test_prefill_contention_delays_the_last_of_eight_long_prompts() -> None:
    result = profile("h100", LLAMA_8B, 8000, 1, concurrency=8, requests=8)
    ttfts = [request.ttft_ms for request in result.requests]
    assert max(ttfts) >= 4 * min(ttfts)


def test_a_step_carries_at_most_the_token_budget_of_prefill() -> None:
    engine = GpuEngine(find_gpu("h100"), [LLAMA_8B])
    engine.add(LLAMA_8B, 20_000, 1)
    chunks = 0
    while (step := engine.step()) is not None:
        chunks += 1
        assert step.emitted == [] or chunks == 3
    assert chunks == 3  # 8192 + 8192 + 3616 tokens


def test_a_request_larger_than_the_kv_cache_is_refused() -> None:
    engine = GpuEngine(find_gpu("rtx4090"), [LLAMA_8B])
    limit = engine.context_limit(LLAMA_8B)
    assert limit < LLAMA_8B.max_context  # 24 GB leave ~54k tokens of KV cache
    with pytest.raises(ContextTooLong):
        engine.add(LLAMA_8B, limit - 100, 101)
    engine.add(LLAMA_8B, limit - 100, 100)
    assert engine.live_sequences == 1


def test_kv_exhaustion_queues_and_preempts_instead_of_overcommitting() -> None:
    engine = GpuEngine(find_gpu("rtx4090"), [LLAMA_8B])
    tokens = engine.context_limit(LLAMA_8B) // 4
    seqs = [seq for _ in range(8) for seq in engine.add(LLAMA_8B, tokens // 2, tokens // 2)]
    engine.step()
    assert engine.live_sequences == 8
    run_to_end(engine)
    assert engine.preemptions > 0
    assert all(seq.generated == tokens // 2 for seq in seqs)
    assert engine.kv_used_bytes() == 0


def test_new_requests_wait_for_blocks() -> None:
    engine = GpuEngine(find_gpu("rtx4090"), [LLAMA_8B])
    half = engine.context_limit(LLAMA_8B) // 2
    first, second, third = (engine.add(LLAMA_8B, half - 64, 1)[0] for _ in range(3))
    engine.step()
    assert first.blocks and not third.blocks  # the third waits, nothing is evicted
    run_to_end(engine)
    assert first.first_token_s is not None and third.first_token_s is not None
    assert second.first_token_s is not None
    assert third.first_token_s > first.first_token_s


def test_aborting_frees_the_blocks_at_once() -> None:
    engine = GpuEngine(find_gpu("h100"), [LLAMA_8B])
    seqs = engine.add(LLAMA_8B, 4000, 100, count=2)
    engine.step()
    assert engine.kv_used_bytes() > 0
    engine.abort(LLAMA_8B, seqs)
    assert engine.kv_used_bytes() == 0
    assert engine.step() is None


def test_prefix_cache_hits_cut_ttft_and_report_cached_tokens() -> None:
    result = profile("a100", LLAMA_8B, 3000, 8, requests=3, shared_prefix_tokens=2048)
    first, second, third = result.requests
    assert first.cached_tokens == 0
    assert second.cached_tokens == third.cached_tokens == 2048
    assert second.ttft_ms < 0.5 * first.ttft_ms
    cold = profile("a100", LLAMA_8B, 3000, 8, requests=3)
    assert all(request.cached_tokens == 0 for request in cold.requests)
    assert cold.requests[1].ttft_ms == pytest.approx(first.ttft_ms)


def test_a_full_prefix_hit_still_computes_the_last_token() -> None:
    result = profile("a100", LLAMA_8B, 2048, 4, requests=2, shared_prefix_tokens=2048)
    assert result.requests[1].cached_tokens == 2048 - BLOCK_TOKENS


def test_the_prefix_cache_evicts_least_recently_used_blocks() -> None:
    pool = BlockPool(4)
    a = pool.allocate(2)
    assert a is not None
    pool.register(a[0], "a0")
    pool.register(a[1], "a1")
    pool.release(a)
    assert pool.available == 4 and pool.used == 0
    b = pool.allocate(3)  # two free blocks, then the least recently used cached one
    assert b is not None and a[1] in b
    # Released blocks are cached tail first, so the tail of a prefix is evicted first.
    assert pool.match(["a0", "a1"]) == [a[0]]
    assert pool.available == 0


@pytest.mark.parametrize("batch", [1, 8, 32, 96])
def test_tpot_follows_the_memory_bound_step_while_memory_binds(batch: int) -> None:
    deployment = cost.Deployment(LLAMA_8B, find_gpu("h100"))
    result = profile("h100", LLAMA_8B, 16, 64, concurrency=batch, requests=batch)
    work = cost.StepWork(decode_sequences=batch, decode_context=batch * 48)
    parts = cost.step_cost(deployment, work)
    assert parts.memory_s > parts.compute_s
    assert result.summary.tpot_ms_p50 == pytest.approx(1e3 * parts.seconds, rel=0.05)


def test_tpot_grows_with_batch_until_compute_binds() -> None:
    config = EngineConfig(max_num_batched_tokens=8192, max_num_seqs=1024)
    tpots = [
        profile("h100", LLAMA_8B, 16, 64, b, b, config=config).summary.tpot_ms_p50
        for b in (1, 8, 64, 256, 1024)
    ]
    assert tpots == sorted(tpots)
    deployment = cost.Deployment(LLAMA_8B, find_gpu("h100"))
    big = cost.step_cost(deployment, cost.StepWork(decode_sequences=1024, decode_context=1024 * 48))
    assert big.compute_s > big.memory_s  # compute binds at 1024 sequences
    assert tpots[-1] == pytest.approx(1e3 * big.seconds, rel=0.10)
    # Memory bound, 8x the batch costs far less than 8x the time.
    assert tpots[1] < 1.5 * tpots[0]


def test_fp8_halves_the_weights_read_on_h100_and_is_refused_on_a100() -> None:
    bf16 = profile("h100", LLAMA_8B, 512, 64, requests=1).summary.tpot_ms_p50
    fp8 = profile("h100", LLAMA_8B, 512, 64, requests=1, precision="fp8").summary.tpot_ms_p50
    # Half the bytes at 0.75 of the BF16 bandwidth efficiency (cost.FP8_BANDWIDTH_FACTOR).
    assert 0.6 * bf16 < fp8 < 0.8 * bf16
    for gpu in ("a100", "a6000"):
        with pytest.raises(ValueError, match="no FP8"):
            profile(gpu, LLAMA_8B, 512, 64, requests=1, precision="fp8")


def test_tensor_parallel_70b_pays_for_its_all_reduces() -> None:
    deployment = cost.Deployment(LLAMA_70B, find_gpu("h100"), gpu_count=2)
    parts = cost.step_cost(deployment, cost.StepWork(decode_sequences=1, decode_context=600))
    assert parts.communication_s == pytest.approx(160 * (11e-6 + 8192 * 2 / 2 / 450e9), rel=0.01)
    two = profile("h100", LLAMA_70B, 512, 64, requests=1, gpu_count=2).summary.tpot_ms_p50
    four = profile("h100", LLAMA_70B, 512, 64, requests=1, gpu_count=4).summary.tpot_ms_p50
    assert four < two < 2 * four  # more GPUs help, less than linearly
    pcie = cost.Deployment(LLAMA_8B, find_gpu("rtx4090"), gpu_count=2)
    assert cost.communication_seconds(pcie, 1) > cost.communication_seconds(
        cost.Deployment(LLAMA_8B, find_gpu("h100"), gpu_count=2), 1
    )


def test_profile_is_deterministic_and_open_loop_is_seeded() -> None:
    one = profile("a100", LLAMA_8B, 256, 32, rate=5.0, requests=40, seed=3)
    two = profile("a100", LLAMA_8B, 256, 32, rate=5.0, requests=40, seed=3)
    other = profile("a100", LLAMA_8B, 256, 32, rate=5.0, requests=40, seed=4)
    assert one == two
    assert one.requests != other.requests
    assert one.summary.requests_per_s == pytest.approx(5.0, rel=0.5)


def test_closed_loop_keeps_concurrency_requests_in_flight() -> None:
    result = profile("h100", LLAMA_8B, 128, 64, concurrency=4, requests=12)
    assert len(result.requests) == 12
    arrivals = sorted(request.arrival_s for request in result.requests)
    assert arrivals[:4] == [0.0] * 4
    assert all(arrival > 0 for arrival in arrivals[4:])


def test_a_fleet_spreads_requests_to_the_least_loaded_worker() -> None:
    one = profile("a100", LLAMA_8B, 512, 128, concurrency=64, requests=128)
    two = profile("a100", LLAMA_8B, 512, 128, concurrency=64, requests=128, workers=2)
    assert {request.worker for request in two.requests} == {0, 1}
    assert two.summary.tpot_ms_p50 < one.summary.tpot_ms_p50


def test_concurrency_and_rate_together_are_refused() -> None:
    with pytest.raises(ValueError, match="not both"):
        profile("a100", LLAMA_8B, 128, 16, concurrency=2, rate=1.0)


def test_models_sharing_a_gpu_take_turns_on_its_timeline() -> None:
    qwen = find_model("Qwen/Qwen2.5-14B-Instruct")
    gpu = find_gpu("a100")

    def tpot(models: list[ModelSpec]) -> float:
        engine = GpuEngine(gpu, models)
        (seq,) = engine.add(LLAMA_8B, 100, 50)
        for model in models[1:]:
            engine.add(model, 100, 200)
        while seq.generated < 50:
            engine.step()
        assert seq.first_token_s is not None
        return (seq.last_token_s - seq.first_token_s) / 49

    alone, shared = tpot([LLAMA_8B]), tpot([LLAMA_8B, qwen])
    qwen_step = cost.decode_seconds(cost.Deployment(qwen, gpu), 1, 150)
    assert shared == pytest.approx(alone + qwen_step, rel=0.02)


def test_a_planner_sized_fleet_meets_an_slo_a_smaller_one_misses() -> None:
    def p99_ttft(workers: int) -> float:
        result = profile(
            "a100", LLAMA_8B, 1024, 128, rate=40.0, requests=400, workers=workers, seed=1
        )
        return result.summary.ttft_ms_p99

    assert p99_ttft(8) < 300.0 < p99_ttft(1)


def test_profile_refuses_requests_the_worker_cannot_hold() -> None:
    with pytest.raises(ValueError, match="holds 0 tokens"):
        profile("rtx4090", LLAMA_70B, 128, 16)
    with pytest.raises(ValueError, match="needs 60000"):
        profile("rtx4090", LLAMA_8B, 50_000, 10_000)


def test_choices_of_one_request_share_their_prompt_blocks() -> None:
    engine = GpuEngine(find_gpu("h100"), [LLAMA_8B])  # 8192 tokens a step: all in one
    keys = tuple(("prompt", j) for j in range(250))
    first, *others = engine.add(LLAMA_8B, 4000, 8, keys, count=4)
    step = engine.step()
    assert step is not None
    assert first.cached_tokens == 0
    assert all(seq.cached_tokens == 4000 - BLOCK_TOKENS for seq in others)
    alone = GpuEngine(find_gpu("h100"), [LLAMA_8B])
    alone.add(LLAMA_8B, 4000, 8, keys)
    single = alone.step()
    assert single is not None
    assert step.seconds < 1.1 * single.seconds  # the prompt is computed once


def test_engine_defaults_follow_vllm_per_gpu() -> None:
    assert GpuEngine(find_gpu("h100"), [LLAMA_8B]).config.max_num_batched_tokens == 8192
    assert GpuEngine(find_gpu("h100"), [LLAMA_8B]).config.max_num_seqs == 1024
    for key in ("a100", "rtx4090", "a6000"):
        config = GpuEngine(find_gpu(key), [LLAMA_8B]).config
        assert (config.max_num_batched_tokens, config.max_num_seqs) == (2048, 256)
