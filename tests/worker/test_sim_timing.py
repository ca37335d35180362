"""The sim's pacing: the live backend follows the engine timeline that the profiler computes.

The live runs go on an event loop whose clock jumps to the next timer instead of
waiting for it, so each run measures exactly the delays the sim computed, at no
cost in real time and whatever the load on the machine. The profiler
(`sim.profile`) runs the same engine as a discrete-event loop; both must agree.
One test still reads the real clock, to show that the live sim really sleeps; it
asserts a lower bound only, which load cannot break.
"""

from __future__ import annotations

import asyncio
import selectors
import time
from collections.abc import Callable, Coroutine
from types import SimpleNamespace
from typing import Any, TypeVar

import pytest

from gpucloud_sim import find_gpu, find_model, live, roofline
from gpucloud_sim.profile import profile
from gpucloud_sim.results import RequestResult
from gpucloud_worker.backend import Chunk, Finish, GenerationRequest, Message
from gpucloud_worker.sim import SimBackend
from gpucloud_worker.sim.text import count_prompt_tokens

T = TypeVar("T")

GPU = "rtx4090"
LLAMA_8B = "meta-llama/Llama-3.1-8B-Instruct"
QWEN_14B = "Qwen/Qwen2.5-14B-Instruct"


class VirtualClock:
    """Seconds from 0 that move only when the loop would otherwise wait for a timer."""

    def __init__(self) -> None:
        self.now = 0.0

    def read(self) -> float:
        return self.now

    def run(self, main: Coroutine[Any, Any, T]) -> T:
        with asyncio.Runner(loop_factory=lambda: _VirtualTimeLoop(self)) as runner:
            return runner.run(main)


class _JumpingSelector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    """Polls without blocking; where the loop would wait for a timer, the clock jumps there."""

    def __init__(self, clock: VirtualClock) -> None:
        super().__init__()
        self._clock = clock

    def select(self, timeout: float | None = None) -> list[tuple[Any, int]]:
        ready: list[tuple[Any, int]] = super().select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:  # no timer left: only I/O could wake the loop, and none will
            raise RuntimeError("the virtual-time loop is stuck: nothing scheduled")
        self._clock.now += timeout
        return ready


class _VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self, clock: VirtualClock) -> None:
        self._clock = clock
        super().__init__(_JumpingSelector(clock))

    def time(self) -> float:
        return self._clock.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> VirtualClock:
    """A virtual clock that the live driver reads too (it keeps its deadlines on `time`)."""
    virtual = VirtualClock()
    monkeypatch.setattr(live, "time", SimpleNamespace(monotonic=virtual.read))
    return virtual


def request_with_prompt(prompt_tokens: int, max_tokens: int, tag: str = "") -> GenerationRequest:
    """A request whose prompt counts exactly `prompt_tokens` for the sim; a distinct
    `tag` keeps concurrent requests from sharing prefix-cache blocks."""
    overhead = count_prompt_tokens([Message("user", "")])
    content = (f"{tag} " + "word " * prompt_tokens)[: 4 * (prompt_tokens - overhead)]
    messages = (Message("user", content),)
    assert count_prompt_tokens(messages) == prompt_tokens
    return GenerationRequest("task", LLAMA_8B, messages, max_tokens, seed=1)


async def timed_run(
    backend: SimBackend,
    request: GenerationRequest,
    now: Callable[[], float] = time.monotonic,
    after_first: Callable[[], None] = lambda: None,
) -> tuple[float, float, Finish]:
    """Seconds (by `now`) to the first chunk and to the Finish."""
    start = now()
    first = 0.0
    async for event in backend.generate(request):
        if isinstance(event, Chunk) and not first:
            first = now() - start
            after_first()
        if isinstance(event, Finish):
            return first, now() - start, event
    raise AssertionError("no Finish")


def profiled(prompt_tokens: int, output_tokens: int, concurrency: int = 1) -> list[RequestResult]:
    """The profiler's latencies of `concurrency` requests sent together."""
    result = profile(
        GPU, LLAMA_8B, prompt_tokens, output_tokens, concurrency=concurrency, requests=concurrency
    )
    return sorted(result.requests, key=lambda r: r.e2e_ms)


def test_a_request_alone_takes_the_profiled_time(clock: VirtualClock) -> None:
    backend = SimBackend(GPU, [LLAMA_8B], speed=50)
    run = timed_run(backend, request_with_prompt(200, 1000), clock.read)
    first, elapsed, finish = clock.run(run)
    (expected,) = profiled(200, 1000)
    assert finish.completion_tokens == 1000
    assert first * 50 == pytest.approx(expected.ttft_ms / 1e3)
    assert elapsed * 50 == pytest.approx(expected.e2e_ms / 1e3)


def test_a_full_batch_takes_the_profiled_time(clock: VirtualClock) -> None:
    backend = SimBackend(GPU, [LLAMA_8B], speed=10)
    slots, prompt, output = backend.slots, 3800, 150

    async def full_batch() -> list[tuple[float, float, Finish]]:
        requests = [request_with_prompt(prompt, output, tag=str(i)) for i in range(slots)]
        return await asyncio.gather(*(timed_run(backend, r, clock.read) for r in requests))

    runs = clock.run(full_batch())
    assert all(finish.completion_tokens == output for _, _, finish in runs)
    expected = profiled(prompt, output, concurrency=slots)
    assert sorted(elapsed * 10 for _, elapsed, _ in runs) == pytest.approx(
        [r.e2e_ms / 1e3 for r in expected]
    )
    # Sharing the GPU (and its bandwidth for the batch's KV cache) slows every request.
    (alone,) = profiled(prompt, output)
    assert expected[0].e2e_ms > 1.3 * alone.e2e_ms


def test_time_to_first_token_follows_prompt_length(clock: VirtualClock) -> None:
    ttft = {}
    for prompt in (2000, 8000):
        backend = SimBackend(GPU, [LLAMA_8B], speed=2)
        first, _, _ = clock.run(timed_run(backend, request_with_prompt(prompt, 1), clock.read))
        (expected,) = profiled(prompt, 1)
        assert first * 2 == pytest.approx(expected.ttft_ms / 1e3)
        ttft[prompt] = first
    assert ttft[8000] > 3 * ttft[2000]


def test_a_late_token_is_caught_up_on_the_next_ones(clock: VirtualClock) -> None:
    """Deadlines are absolute: lateness (a loop busy elsewhere) does not add up."""
    backend = SimBackend(GPU, [LLAMA_8B], speed=1)
    (expected,) = profiled(200, 100)
    decode_s = (expected.e2e_ms - expected.ttft_ms) / 1e3

    def stall() -> None:  # the loop kept busy for a quarter of the decode time
        clock.now += decode_s / 4

    run = timed_run(backend, request_with_prompt(200, 100), clock.read, after_first=stall)
    _, elapsed, _ = clock.run(run)
    assert elapsed == pytest.approx(expected.e2e_ms / 1e3)


def test_speed_zero_generates_without_delays(clock: VirtualClock) -> None:
    backend = SimBackend(GPU, [LLAMA_8B], speed=0)
    run = timed_run(backend, request_with_prompt(4000, 2000), clock.read)
    first, elapsed, finish = clock.run(run)
    assert finish.completion_tokens == 2000
    assert (first, elapsed) == (0.0, 0.0)  # tens of seconds of simulated GPU time


@pytest.mark.wallclock
async def test_real_time_pacing_is_never_faster_than_the_profile() -> None:
    """The one real-clock check: the live sim really sleeps. A loaded machine only adds
    lateness, so a lower bound is all that is asserted."""
    backend = SimBackend(GPU, [LLAMA_8B], speed=100)
    _, elapsed, _ = await timed_run(backend, request_with_prompt(200, 200))
    await backend.close()
    (expected,) = profiled(200, 200)
    assert elapsed >= expected.e2e_ms / 1e3 / 100 * 0.99  # about 40 ms


# The uncalibrated roofline formulas (sim/roofline.py), pinned while they remain.


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
