"""The sim's pacing against its own roofline formulas (wall clock, sped up)."""

from __future__ import annotations

import asyncio
import time

import pytest

from gpucloud_worker.backend import Chunk, Finish, GenerationRequest, Message
from gpucloud_worker.sim import SimBackend, find_gpu, find_model, roofline
from gpucloud_worker.sim.text import count_prompt_tokens

LLAMA_8B = "meta-llama/Llama-3.1-8B-Instruct"
QWEN_14B = "Qwen/Qwen2.5-14B-Instruct"
TOLERANCE = 0.10


def request_with_prompt(prompt_tokens: int, max_tokens: int) -> GenerationRequest:
    """A request whose prompt counts exactly `prompt_tokens` for the sim."""
    overhead = count_prompt_tokens([Message("user", "")])
    content = "word " * (prompt_tokens - overhead)  # 5 chars -> 1.25 tokens each
    content = content[: 4 * (prompt_tokens - overhead)]
    messages = (Message("user", content),)
    assert count_prompt_tokens(messages) == prompt_tokens
    return GenerationRequest("task", LLAMA_8B, messages, max_tokens, seed=1)


async def timed_run(backend: SimBackend, request: GenerationRequest) -> tuple[float, float, Finish]:
    """Seconds to the first chunk and to the Finish."""
    start = time.monotonic()
    first = 0.0
    async for event in backend.generate(request):
        if isinstance(event, Chunk) and not first:
            first = time.monotonic() - start
        if isinstance(event, Finish):
            return first, time.monotonic() - start, event
    raise AssertionError("no Finish")


async def test_batch_of_one_runs_within_10_percent_of_the_formula() -> None:
    backend = SimBackend("rtx4090", [LLAMA_8B], speed=50)
    request = request_with_prompt(200, 1000)
    _, elapsed, finish = await timed_run(backend, request)
    assert finish.completion_tokens == 1000
    model, gpu = find_model(LLAMA_8B), find_gpu("rtx4090")
    expected = roofline.generation_seconds(model, gpu, 200, 1000) / 50
    assert elapsed == pytest.approx(expected, rel=TOLERANCE)


async def test_full_batch_runs_within_10_percent_of_the_formula() -> None:
    backend = SimBackend("rtx4090", [LLAMA_8B], speed=10)
    slots, prompt, output = backend.slots, 3800, 150
    start = time.monotonic()
    runs = await asyncio.gather(
        *(timed_run(backend, request_with_prompt(prompt, output)) for _ in range(slots))
    )
    elapsed = time.monotonic() - start
    assert all(finish.completion_tokens == output for _, _, finish in runs)
    model, gpu = find_model(LLAMA_8B), find_gpu("rtx4090")
    full = roofline.generation_seconds(model, gpu, prompt, output, batch_size=slots) / 10
    alone = roofline.generation_seconds(model, gpu, prompt, output) / 10
    assert elapsed == pytest.approx(full, rel=TOLERANCE)
    # The KV cache of the full batch makes it clearly slower than one sequence.
    assert full > 1.3 * alone


async def test_time_to_first_token_follows_prompt_length() -> None:
    backend = SimBackend("rtx4090", [LLAMA_8B], speed=2)
    model, gpu = find_model(LLAMA_8B), find_gpu("rtx4090")
    short, long = await asyncio.gather(
        timed_run(backend, request_with_prompt(2000, 1)),
        timed_run(backend, request_with_prompt(8000, 1)),
    )
    assert short[0] == pytest.approx(roofline.prefill_seconds(model, gpu, 2000) / 2, rel=TOLERANCE)
    assert long[0] == pytest.approx(roofline.prefill_seconds(model, gpu, 8000) / 2, rel=TOLERANCE)


def test_prefill_is_compute_bound_and_linear_in_prompt_tokens() -> None:
    model, gpu = find_model(LLAMA_8B), find_gpu("h100")
    one_k = roofline.prefill_seconds(model, gpu, 1000)
    assert one_k == pytest.approx(2 * 8.03e9 * 1000 / (989.4e12 * 0.5))
    assert roofline.prefill_seconds(model, gpu, 4000) == pytest.approx(4 * one_k)
    assert roofline.prefill_seconds(model, gpu, 1000, gpu_count=2) == pytest.approx(one_k / 2)


def test_decode_step_reads_weights_and_the_batch_kv_cache() -> None:
    model, gpu = find_model(LLAMA_8B), find_gpu("a100")
    alone = roofline.decode_step_seconds(model, gpu, 1, 0)
    assert alone == pytest.approx(8.03e9 * 2 / (2039e9 * 0.7))
    batch = roofline.decode_step_seconds(model, gpu, 32, 32 * 4096)
    kv = 32 * 4096 * model.kv_bytes_per_token / (2039e9 * 0.7)
    assert batch == pytest.approx(alone + kv)


def test_decode_turns_compute_bound_at_a_huge_batch() -> None:
    model, gpu = find_model(LLAMA_8B), find_gpu("h100")
    step = roofline.decode_step_seconds(model, gpu, 1000, 0)
    assert step == pytest.approx(2 * 8.03e9 * 1000 / (989.4e12 * 0.5))
    assert step > roofline.decode_step_seconds(model, gpu, 1, 0)


def test_models_sharing_a_gpu_take_turns() -> None:
    gpu = find_gpu("a100")
    llama, qwen = find_model(LLAMA_8B), find_model(QWEN_14B)
    interval = roofline.token_interval_seconds({llama: (2, 200), qwen: (1, 100)}, gpu)
    expected = roofline.decode_step_seconds(llama, gpu, 2, 200) + roofline.decode_step_seconds(
        qwen, gpu, 1, 100
    )
    assert interval == pytest.approx(expected)
    assert roofline.token_interval_seconds({llama: (0, 0)}, gpu) == 0.0


async def test_speed_zero_generates_without_delays() -> None:
    backend = SimBackend("rtx4090", [LLAMA_8B], speed=0)
    _, elapsed, finish = await timed_run(backend, request_with_prompt(4000, 2000))
    assert finish.completion_tokens == 2000
    real = roofline.generation_seconds(find_model(LLAMA_8B), find_gpu("rtx4090"), 4000, 2000)
    assert elapsed < real / 10  # 47 s of simulated GPU time
