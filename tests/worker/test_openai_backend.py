"""The openai backend against a real inference server: llama.cpp's, doing real inference on the CPU.

The server is llama-cpp-python's, run with its defaults, on a tiny random model
(tests/worker/llama_upstream.py): gibberish, one printable character per token,
never an early end. It sends no usage chunk, so the counted fallback is what the
Finish carries.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pynvml
import pytest
from llama_upstream import (
    MODEL_ALIAS,
    DisconnectProxy,
    LlamaServer,
    require_llama,
    running_llama,
    write_tiny_llama,
)

from gpucloud_worker.backend import (
    BackendError,
    Chunk,
    ErrorKind,
    Finish,
    FinishReason,
    GenerationRequest,
    Message,
    ModelOffer,
)
from gpucloud_worker.nvml import Nvml
from gpucloud_worker.openai_backend import (
    CHAT_CAPABILITIES,
    OpenAIBackend,
    estimate_prompt_tokens,
)

pytestmark = [pytest.mark.slow, pytest.mark.llama]  # `make test-llama` runs these

NO_GPU = Nvml(None, ())


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_llama()
    return write_tiny_llama(tmp_path_factory.mktemp("model") / "tiny-llama.gguf")


@pytest.fixture(scope="module")
def llama(tiny_model: Path) -> Iterator[LlamaServer]:
    with running_llama(tiny_model, tiny_model.with_suffix(".log")) as server:
        yield server


@pytest.fixture
def own_llama(tiny_model: Path, tmp_path: Path) -> Iterator[LlamaServer]:
    """A server this test may kill."""
    with running_llama(tiny_model, tmp_path / "llama.log") as server:
        yield server


@pytest.fixture
async def backend(llama: LlamaServer) -> AsyncIterator[OpenAIBackend]:
    backend = OpenAIBackend(llama.url, nvml=NO_GPU)
    await backend.start()
    yield backend
    await backend.close()


async def drain(stream: AsyncIterator[Chunk | Finish]) -> None:
    async for _ in stream:
        pass


def task(max_tokens: int, content: str = "Say something.", n: int = 1) -> GenerationRequest:
    messages = (Message("user", content),)
    return GenerationRequest("t", MODEL_ALIAS, messages, max_tokens=max_tokens, n=n, seed=1)


async def test_discovers_the_model_the_server_serves(llama: LlamaServer) -> None:
    backend = OpenAIBackend(llama.url, nvml=NO_GPU)
    description = await backend.start()
    await backend.close()
    assert description.models == (ModelOffer(MODEL_ALIAS, "me", CHAT_CAPABILITIES),)
    assert description.backend == "openai"


@pytest.mark.wallclock
async def test_streams_each_token_as_it_is_generated(backend: OpenAIBackend) -> None:
    started = time.monotonic()
    arrivals: list[float] = []
    items: list[Chunk | Finish] = []
    async for item in backend.generate(task(max_tokens=300)):
        arrivals.append(time.monotonic() - started)
        items.append(item)
    *chunks, _ = items
    assert all(isinstance(c, Chunk) and c.tokens == 1 and len(c.text) == 1 for c in chunks)
    assert len(chunks) == 300
    # Relayed as they come, not gathered: gathered tokens would all arrive within
    # microseconds of each other; streamed ones spread over the generation. (The first
    # token's share of the call, prefill and connection, grows on a loaded machine.)
    assert arrivals[-1] - arrivals[0] > 0.1 * arrivals[-1]


async def test_usage_falls_back_to_counting_without_a_usage_chunk(backend: OpenAIBackend) -> None:
    request = task(max_tokens=25, content="Count me: " + "word " * 40)
    items = [item async for item in backend.generate(request)]
    assert items[-1] == Finish(
        reasons=(FinishReason.LENGTH,),
        prompt_tokens=estimate_prompt_tokens(request.messages),
        completion_tokens=25,
    )
    assert sum(c.tokens for c in items if isinstance(c, Chunk)) == 25


async def test_n_beyond_what_the_server_does_ends_the_extra_choices_empty(
    backend: OpenAIBackend,
) -> None:
    """llama-cpp-python ignores n; the task still finishes rather than failing."""
    items = [item async for item in backend.generate(task(max_tokens=5, n=2))]
    assert {c.index for c in items if isinstance(c, Chunk)} == {0}
    assert items[-1].reasons == (FinishReason.LENGTH, FinishReason.STOP)  # type: ignore[union-attr]


async def test_prompt_beyond_the_context_fails_without_retry(backend: OpenAIBackend) -> None:
    """llama-cpp-python ends such a stream empty (no 4xx once streaming): not worth a retry."""
    with pytest.raises(BackendError) as caught:
        await drain(backend.generate(task(max_tokens=5, content="x " * 3000)))
    assert caught.value.kind == ErrorKind.INTERNAL


@pytest.mark.wallclock
async def test_cancelling_drops_the_upstream_request(llama: LlamaServer) -> None:
    proxy = DisconnectProxy(llama.port)
    await proxy.start()
    backend = OpenAIBackend(proxy.url, models=[MODEL_ALIAS], nvml=NO_GPU)
    await backend.start()
    log_before = llama.log().count("disconnected")
    try:
        stream = backend.generate(task(max_tokens=1500))
        assert isinstance(await anext(stream), Chunk)
        cancelled = time.monotonic()
        await stream.aclose()
        await asyncio.wait_for(proxy.hangup.wait(), timeout=2)
        assert time.monotonic() - cancelled < 2
        # llama-cpp-python's own word that it stopped generating for us.
        deadline = time.monotonic() + 5
        while llama.log().count("disconnected") == log_before and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert llama.log().count("disconnected") > log_before
        # The server is free again: the next task runs to its end.
        *_, finish = [item async for item in backend.generate(task(max_tokens=3))]
        assert isinstance(finish, Finish)
    finally:
        await backend.close()
        await proxy.close()


async def test_upstream_down_before_the_task_is_retryable(own_llama: LlamaServer) -> None:
    backend = OpenAIBackend(own_llama.url, nvml=NO_GPU)
    await backend.start()
    own_llama.kill()
    with pytest.raises(BackendError) as caught:
        await drain(backend.generate(task(max_tokens=5)))
    await backend.close()
    assert caught.value.kind == ErrorKind.RETRYABLE


async def test_upstream_killed_mid_stream_is_internal(own_llama: LlamaServer) -> None:
    backend = OpenAIBackend(own_llama.url, nvml=NO_GPU)
    await backend.start()
    stream = backend.generate(task(max_tokens=1500))
    assert isinstance(await anext(stream), Chunk)
    own_llama.kill()
    with pytest.raises(BackendError) as caught:
        await drain(stream)
    await backend.close()
    assert caught.value.kind == ErrorKind.INTERNAL


async def test_health_follows_the_upstream_down_and_back(own_llama: LlamaServer) -> None:
    backend = OpenAIBackend(own_llama.url, health_timeout=1.0, nvml=NO_GPU)
    await backend.start()
    try:
        assert (await backend.health()).healthy
        own_llama.kill()
        health = await backend.health()
        assert not health.healthy
        assert "unreachable" in health.message
        own_llama.start()  # same port
        assert (await backend.health()).healthy
    finally:
        await backend.close()


@pytest.mark.wallclock
async def test_health_checks_do_not_disturb_a_running_stream(backend: OpenAIBackend) -> None:
    """llama-cpp-python cuts a running stream to answer any other request, a probe too."""
    items: list[Chunk | Finish] = []
    async for item in backend.generate(task(max_tokens=400)):
        items.append(item)
        if len(items) in (1, 200):
            started = time.monotonic()
            assert (await backend.health()).healthy
            assert time.monotonic() - started < 1
    assert items[-1] == Finish(
        (FinishReason.LENGTH,), estimate_prompt_tokens(task(1).messages), 400
    )


async def test_upstream_key_is_sent_and_a_rejected_key_is_not_the_clients_fault(
    tiny_model: Path, tmp_path: Path
) -> None:
    with running_llama(tiny_model, tmp_path / "llama.log", "--api_key", "sk-right") as server:
        good = OpenAIBackend(server.url, api_key="sk-right", nvml=NO_GPU)
        assert (await good.start()).models[0].id == MODEL_ALIAS
        assert isinstance([i async for i in good.generate(task(3))][-1], Finish)
        await good.close()
        bad = OpenAIBackend(server.url, api_key="sk-wrong", models=[MODEL_ALIAS], nvml=NO_GPU)
        await bad.start()
        with pytest.raises(BackendError) as caught:
            await drain(bad.generate(task(3)))
        health = await bad.health()
        await bad.close()
    assert caught.value.kind == ErrorKind.INTERNAL
    assert caught.value.details == {"upstream_status": "401"}
    assert not health.healthy


async def test_without_nvml_the_worker_reports_no_gpus(
    llama: LlamaServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def absent() -> None:
        raise pynvml.NVMLError_LibraryNotFound()

    monkeypatch.setattr(pynvml, "nvmlInit", absent)
    backend = OpenAIBackend(llama.url)  # opens NVML itself
    description = await backend.start()
    health = await backend.health()
    await backend.close()
    assert description.gpus == ()
    assert (health.gpus, health.healthy) == ((), True)
