"""SimBackend on the engine timeline (speed 0: the engine's virtual clock, no sleeping)."""

from __future__ import annotations

import asyncio

import pytest

from gpucloud_sim.profile import profile
from gpucloud_worker.backend import (
    BackendError,
    Chunk,
    ErrorKind,
    Finish,
    GenerationRequest,
    Message,
)
from gpucloud_worker.sim import SimBackend
from gpucloud_worker.sim.text import count_prompt_tokens

LLAMA_8B = "meta-llama/Llama-3.1-8B-Instruct"
SYSTEM = Message("system", "You are a careful assistant. " * 200)


def chat(*messages: Message, max_tokens: int = 32, n: int = 1) -> GenerationRequest:
    return GenerationRequest("task", LLAMA_8B, messages, max_tokens, seed=1, n=n)


async def finish_of(backend: SimBackend, request: GenerationRequest) -> Finish:
    async for event in backend.generate(request):
        if isinstance(event, Finish):
            return event
    raise AssertionError("no Finish")


async def test_a_repeated_system_prompt_is_served_from_the_prefix_cache() -> None:
    backend = SimBackend("h100", [LLAMA_8B], speed=0)
    first = await finish_of(backend, chat(SYSTEM, Message("user", "Hello there")))
    second = await finish_of(backend, chat(SYSTEM, Message("user", "Something else")))
    assert first.cached_tokens == 0
    # The system message and the next message's template tokens, in whole blocks.
    shared = count_prompt_tokens([SYSTEM]) - 3 + 4  # less the reply priming
    assert second.cached_tokens == shared // 16 * 16


async def test_the_backend_runs_the_profilers_timeline() -> None:
    backend = SimBackend("a100", [LLAMA_8B], speed=0)
    request = chat(Message("user", "word " * 400), max_tokens=200)
    await finish_of(backend, request)
    prompt = count_prompt_tokens(request.messages)
    expected = profile("a100", LLAMA_8B, prompt, 200, requests=1).requests[0]
    assert backend.engine.now == pytest.approx(expected.e2e_ms / 1e3)


async def test_concurrent_generations_share_decode_steps() -> None:
    alone = SimBackend("a100", [LLAMA_8B], speed=0)
    await finish_of(alone, chat(Message("user", "hi"), max_tokens=100))
    shared = SimBackend("a100", [LLAMA_8B], speed=0)
    await asyncio.gather(
        *(finish_of(shared, chat(Message("user", "hi"), max_tokens=100)) for _ in range(8))
    )
    assert shared.engine.now < 1.5 * alone.engine.now


async def test_a_sequence_longer_than_the_kv_cache_is_context_length_exceeded() -> None:
    backend = SimBackend("rtx4090", [LLAMA_8B], speed=0)
    limit = backend.engine.context_limit(backend.models[0])
    request = chat(Message("user", "x" * 4 * (limit - 100)), max_tokens=200)
    with pytest.raises(BackendError, match="KV cache holds") as caught:
        await finish_of(backend, request)
    assert caught.value.kind is ErrorKind.INVALID_REQUEST
    assert caught.value.details == {"code": "context_length_exceeded", "param": "messages"}


async def test_memory_follows_the_live_kv_cache() -> None:
    backend = SimBackend("h100", [LLAMA_8B], speed=0)
    idle = (await backend.health()).gpus[0].memory_used_bytes
    stream = backend.generate(chat(Message("user", "word " * 4000), max_tokens=1000, n=2))
    assert isinstance(await anext(stream), Chunk)
    busy = (await backend.health()).gpus[0]
    # Both choices hold the 5k-token prompt's KV cache, once: they share its blocks.
    assert 5000 * 131_072 <= busy.memory_used_bytes - idle < 2 * 5000 * 131_072
    assert busy.utilization_percent > 90.0
    await stream.aclose()
    assert (await backend.health()).gpus[0].memory_used_bytes == idle
    assert backend.active_sequences == 0


async def test_a_stop_sequence_frees_its_sequence_early() -> None:
    backend = SimBackend("h100", [LLAMA_8B], speed=0)
    request = chat(Message("user", "Tell me"), max_tokens=500)
    text = ""
    async for event in backend.generate(request):
        if isinstance(event, Chunk):
            text += event.text
    stop = text.split()[5]
    finish = await finish_of(backend, GenerationRequest(
        "task", LLAMA_8B, request.messages, 500, seed=1, stop=(stop,)))  # fmt: skip
    assert finish.completion_tokens < 500
    assert backend.active_sequences == 0
    assert backend.engine.kv_used_bytes() == 0


def test_fp8_is_refused_on_a_gpu_without_fp8_tensor_cores() -> None:
    with pytest.raises(ValueError, match="no FP8"):
        SimBackend("a100", [LLAMA_8B], precision="fp8")
    assert SimBackend("h100", [LLAMA_8B], precision="fp8").engine.weight_bytes == 8_030_000_000


@pytest.mark.parametrize("speed", [0.0, 1000.0])
async def test_a_generation_ending_while_the_last_one_finishes_leaves_it_its_token(
    speed: float,
) -> None:
    # The short request ends (and its generator closes) while the driver sleeps through
    # the step that finishes the long one: that step's token must still be delivered.
    backend = SimBackend("h100", [LLAMA_8B], speed=speed)

    async def run(max_tokens: int) -> int:
        tokens = 0
        async for event in backend.generate(chat(Message("user", "hi"), max_tokens=max_tokens)):
            tokens += event.tokens if isinstance(event, Chunk) else 0
        return tokens

    both = asyncio.gather(run(1), run(2))
    assert await asyncio.wait_for(both, 10) == [1, 2]
    assert backend.active_sequences == 0


def test_fp8_fits_a_14b_on_an_rtx4090() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        SimBackend("rtx4090", ["Qwen/Qwen2.5-14B-Instruct"])
    backend = SimBackend("rtx4090", ["Qwen/Qwen2.5-14B-Instruct"], precision="fp8")
    assert backend.slots >= 4


async def test_an_engine_failure_ends_generations_with_an_internal_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    backend = SimBackend("h100", [LLAMA_8B], speed=0)

    def broken() -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(backend.engine, "step", broken)
    for _ in range(2):  # the one running, then any later one
        with pytest.raises(BackendError) as caught:
            await finish_of(backend, chat(Message("user", "hi")))
        assert caught.value.kind is ErrorKind.INTERNAL


async def test_a_worker_tells_how_much_of_a_prompt_it_has_cached() -> None:
    backend = SimBackend("h100", [LLAMA_8B], speed=0)
    request = chat(SYSTEM, Message("user", "Hello there"))
    assert backend.cached_prompt_tokens(request) == 0
    await finish_of(backend, request)
    again = chat(SYSTEM, Message("user", "Another question"))
    cached = backend.cached_prompt_tokens(again)
    assert cached > 1000
    finish = await finish_of(backend, again)
    assert finish.cached_tokens == cached
    assert backend.cached_prompt_tokens(chat(Message("user", "new"), n=1)) == 0
