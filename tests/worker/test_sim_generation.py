"""What the sim generates: text, limits, stops, choices, errors, cancellation, health."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from gpucloud_worker.backend import (
    BackendError,
    Chunk,
    ErrorKind,
    Finish,
    FinishReason,
    GenerationRequest,
    Message,
)
from gpucloud_worker.sim import SimBackend

LLAMA_8B = "meta-llama/Llama-3.1-8B-Instruct"


@dataclass
class Output:
    texts: dict[int, str] = field(default_factory=dict)
    tokens: dict[int, int] = field(default_factory=dict)
    chunks: list[Chunk] = field(default_factory=list)
    finish: Finish | None = None


def request(max_tokens: int = 0, **changes: Any) -> GenerationRequest:
    base = GenerationRequest(
        task_id="task",
        model=LLAMA_8B,
        messages=(Message("user", "Explain how to pick a GPU for inference."),),
        max_tokens=max_tokens,
        seed=7,
    )
    return replace(base, **changes)


async def collect(backend: SimBackend, req: GenerationRequest) -> Output:
    out = Output()
    async for event in backend.generate(req):
        if isinstance(event, Finish):
            assert out.finish is None
            out.finish = event
            continue
        assert out.finish is None, "nothing after Finish"
        out.chunks.append(event)
        out.texts[event.index] = out.texts.get(event.index, "") + event.text
        out.tokens[event.index] = out.tokens.get(event.index, 0) + event.tokens
    assert out.finish is not None
    return out


@pytest.fixture
def backend() -> SimBackend:
    return SimBackend("rtx4090", [LLAMA_8B], speed=0)


async def test_same_seed_and_prompt_give_the_same_text(backend: SimBackend) -> None:
    first = await collect(backend, request(seed=42))
    again = await collect(SimBackend("rtx4090", speed=0), request(seed=42))
    other = await collect(backend, request(seed=43))
    assert first.texts == again.texts
    assert first.texts != other.texts


async def test_requests_without_seed_vary_but_replay_with_the_backend_seed() -> None:
    one, two = SimBackend("a100", speed=0, seed=5), SimBackend("a100", speed=0, seed=5)
    outputs = [await collect(b, request(seed=None)) for b in (one, one, two, two)]
    assert outputs[0].texts != outputs[1].texts
    assert [o.texts for o in outputs[:2]] == [o.texts for o in outputs[2:]]


async def test_natural_answer_reads_like_text_and_stops(backend: SimBackend) -> None:
    out = await collect(backend, request(max_tokens=0))
    assert out.finish is not None
    assert out.finish.reasons == (FinishReason.STOP,)
    text = out.texts[0]
    assert text[0].isupper()
    assert text.endswith(".")
    assert text.count(". ") + text.count(".\n") >= 2
    words = text.split()
    assert all(word.strip(".,!?").replace("-", "").isalpha() for word in words)
    assert out.finish.completion_tokens == out.tokens[0] == len(out.chunks)


async def test_max_tokens_ends_with_length(backend: SimBackend) -> None:
    out = await collect(backend, request(max_tokens=25))
    assert out.finish is not None
    assert out.finish.reasons == (FinishReason.LENGTH,)
    assert out.finish.completion_tokens == out.tokens[0] == 25
    assert out.finish.prompt_tokens == 3 + 4 + 10  # 40 chars / 4 + template tokens


async def test_only_the_first_chunk_reports_the_prompt_tokens(backend: SimBackend) -> None:
    out = await collect(backend, request(max_tokens=5, n=2))
    assert out.finish is not None
    assert out.chunks[0].prompt_tokens == out.finish.prompt_tokens > 0
    assert all(chunk.prompt_tokens == 0 for chunk in out.chunks[1:])


async def test_stop_sequence_ends_before_the_stop_text(backend: SimBackend) -> None:
    out = await collect(backend, request(max_tokens=500, stop=(".",)))
    assert out.finish is not None
    assert out.finish.reasons == (FinishReason.STOP,)
    assert "." not in out.texts[0]
    assert out.finish.completion_tokens == out.tokens[0]


async def test_stop_sequence_spanning_tokens_is_never_sent(backend: SimBackend) -> None:
    plain = await collect(backend, request(max_tokens=60))
    phrase = plain.chunks[20].text + plain.chunks[21].text
    out = await collect(backend, request(max_tokens=60, stop=(phrase, "never appears")))
    assert out.finish is not None
    assert out.finish.reasons == (FinishReason.STOP,)
    assert out.texts[0] == plain.texts[0][: plain.texts[0].index(phrase)]
    assert out.finish.completion_tokens == out.tokens[0]


async def test_n_choices_are_indexed_and_differ(backend: SimBackend) -> None:
    out = await collect(backend, request(max_tokens=20, n=3))
    assert out.finish is not None
    assert sorted(out.texts) == [0, 1, 2]
    assert out.finish.reasons == (FinishReason.LENGTH,) * 3
    assert out.tokens == {0: 20, 1: 20, 2: 20}
    assert out.finish.completion_tokens == 60
    assert len(set(out.texts.values())) == 3


async def test_choices_end_on_their_own_stop(backend: SimBackend) -> None:
    out = await collect(backend, request(max_tokens=0, n=4))
    assert out.finish is not None
    assert out.finish.reasons == (FinishReason.STOP,) * 4
    assert out.finish.completion_tokens == sum(out.tokens.values())
    assert backend.active_sequences == 0


async def test_prompt_longer_than_the_context_is_an_invalid_request(
    backend: SimBackend,
) -> None:
    huge = (Message("user", "x" * 4 * 131_072),)
    with pytest.raises(BackendError, match="maximum context length is 131072") as caught:
        await collect(backend, request(messages=huge))
    assert caught.value.kind is ErrorKind.INVALID_REQUEST
    near = (Message("user", "x" * 4 * 130_000),)
    with pytest.raises(BackendError, match="in the completion"):
        await collect(backend, request(max_tokens=2000, messages=near))
    assert backend.active_sequences == 0


async def test_model_not_served_here_is_retryable(backend: SimBackend) -> None:
    with pytest.raises(BackendError, match="not served") as caught:
        await collect(backend, request(model="Qwen/Qwen2.5-14B-Instruct"))
    assert caught.value.kind is ErrorKind.RETRYABLE


async def test_aclose_stops_at_once_and_frees_the_slot() -> None:
    backend = SimBackend("rtx4090", [LLAMA_8B], speed=1)  # 1000 tokens = 23 s
    stream = backend.generate(request(max_tokens=1000, n=2))
    first = await anext(stream)
    assert isinstance(first, Chunk)
    assert backend.active_sequences == 2
    # A generous deadline, still far below the 23 s the whole answer would take.
    await asyncio.wait_for(stream.aclose(), 10)
    assert backend.active_sequences == 0


async def test_cancelling_the_consumer_task_frees_the_slot() -> None:
    backend = SimBackend("rtx4090", [LLAMA_8B], speed=1)
    got_chunk = asyncio.Event()

    async def consume() -> None:
        async with contextlib.aclosing(backend.generate(request(max_tokens=1000))) as stream:
            async for _ in stream:
                got_chunk.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(got_chunk.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)  # far below the 23 s of the whole answer
    assert backend.active_sequences == 0
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_cancellation_works_without_delays(backend: SimBackend) -> None:
    task = asyncio.create_task(collect(backend, request(max_tokens=40_000)))
    await asyncio.sleep(0.05)
    assert backend.active_sequences == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert backend.active_sequences == 0


async def test_more_generations_than_slots_still_complete() -> None:
    backend = SimBackend("rtx4090", [LLAMA_8B], speed=0)
    outputs = await asyncio.gather(
        *(collect(backend, request(max_tokens=30)) for _ in range(backend.slots + 5))
    )
    assert all(out.tokens[0] == 30 for out in outputs)
    assert backend.active_sequences == 0


async def test_health_follows_the_load() -> None:
    backend = SimBackend("rtx4090", [LLAMA_8B], speed=20)
    await backend.start()
    idle = (await backend.health()).gpus[0]
    assert idle.utilization_percent == 0.0
    tasks = [asyncio.create_task(collect(backend, request(max_tokens=2000))) for _ in range(8)]
    await asyncio.sleep(0.3)
    busy = (await backend.health()).gpus[0]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert busy.utilization_percent > 90.0
    assert busy.memory_used_bytes > idle.memory_used_bytes
    assert busy.power_watts is not None
    assert idle.power_watts is not None
    assert busy.temperature_celsius is not None
    assert idle.temperature_celsius is not None
    assert 25.0 <= idle.power_watts < busy.power_watts <= 450.0
    assert idle.temperature_celsius < busy.temperature_celsius
    await asyncio.sleep(0.05)
    await backend.health()  # the interval that saw the cancellation
    await asyncio.sleep(0.05)
    after = (await backend.health()).gpus[0]
    assert after.utilization_percent == 0.0
    assert after.memory_used_bytes == idle.memory_used_bytes


async def test_health_reports_every_gpu_and_splits_memory() -> None:
    backend = SimBackend("h100", ["meta-llama/Llama-3.1-70B-Instruct"], gpu_count=2)
    health = await backend.health()
    assert health.healthy
    assert [gpu.index for gpu in health.gpus] == [0, 1]
    assert all(40 * 1024**3 < gpu.memory_used_bytes < 80 * 1024**3 for gpu in health.gpus)
