"""The openai backend's protocol mapping, against scripted upstreams doing what real ones rarely do.

llama.cpp's server (test_openai_backend.py) covers the normal path; these cover
usage chunks, n > 1, 5xx, 401, in-stream errors and timeouts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from fake_upstream import FakeUpstream, delta, drop, hang, sse, status

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


@pytest.fixture
async def backend(upstream: FakeUpstream) -> AsyncIterator[OpenAIBackend]:
    backend = OpenAIBackend(
        f"http://127.0.0.1:{upstream.port}/v1",
        api_key="sk-upstream",
        read_timeout=0.5,
        nvml=Nvml(None, ()),
    )
    await backend.start()
    yield backend
    await backend.close()


def task(n: int = 1, **options: Any) -> GenerationRequest:
    messages = (Message("system", "be brief"), Message("user", "hello there"))
    return GenerationRequest("t1", "m", messages, max_tokens=16, n=n, **options)


async def run(backend: OpenAIBackend, request: GenerationRequest) -> list[Chunk | Finish]:
    return [item async for item in backend.generate(request)]


async def failure(backend: OpenAIBackend, request: GenerationRequest) -> BackendError:
    with pytest.raises(BackendError) as caught:
        await run(backend, request)
    return caught.value


async def test_forwards_parameters_and_asks_for_usage(
    backend: OpenAIBackend, upstream: FakeUpstream
) -> None:
    await run(backend, task(temperature=0.5, top_p=0.9, stop=("\n",), seed=7))
    path, headers, body = upstream.requests[-1]
    assert (path, headers["authorization"]) == ("/v1/chat/completions", "Bearer sk-upstream")
    assert body == {
        "model": "m",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hello there"},
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 16,
        "temperature": 0.5,
        "top_p": 0.9,
        "seed": 7,
        "stop": ["\n"],
    }


async def test_discovers_models_with_their_owner(upstream: FakeUpstream) -> None:
    backend = OpenAIBackend(f"http://127.0.0.1:{upstream.port}/v1", nvml=Nvml(None, ()))
    description = await backend.start()
    await backend.close()
    assert description.models == (ModelOffer("m", "o", CHAT_CAPABILITIES),)
    assert (description.backend, description.gpus, description.slots) == ("openai", (), 8)


async def test_upstream_usage_chunk_wins_over_counting(
    backend: OpenAIBackend, upstream: FakeUpstream
) -> None:
    usage = {"choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 5}}
    upstream.chat = sse({"choices": [{"index": 0, "delta": {"role": "assistant"}}]},
                        delta("Hel"), delta("lo", finish="length"), usage)  # fmt: skip
    items = await run(backend, task())
    assert items == [
        Chunk(0, "Hel", 1, prompt_tokens=estimate_prompt_tokens(task().messages)),
        Chunk(0, "lo", 1),
        Finish((FinishReason.LENGTH,), prompt_tokens=11, completion_tokens=5),
    ]


async def test_upstream_cached_prompt_tokens_are_relayed(
    backend: OpenAIBackend, upstream: FakeUpstream
) -> None:
    """vLLM (--enable-prompt-tokens-details) and OpenAI report prefix-cache hits there."""
    details = {"prompt_tokens": 40, "completion_tokens": 1,
               "prompt_tokens_details": {"cached_tokens": 32}}  # fmt: skip
    upstream.chat = sse(delta("a", finish="stop"), {"choices": [], "usage": details})
    *_, finish = await run(backend, task())
    assert finish == Finish((FinishReason.STOP,), 40, 1, cached_tokens=32)


@pytest.mark.parametrize(
    "details",
    [None, {}, {"cached_tokens": None}, {"cached_tokens": 99}, {"cached_tokens": -3}],
    ids=["null", "empty", "null-count", "more-than-the-prompt", "negative"],
)
async def test_missing_or_impossible_cached_counts_stay_within_the_prompt(
    backend: OpenAIBackend, upstream: FakeUpstream, details: dict[str, Any] | None
) -> None:
    usage = {"prompt_tokens": 40, "completion_tokens": 1, "prompt_tokens_details": details}
    upstream.chat = sse(delta("a", finish="stop"), {"choices": [], "usage": usage})
    *_, finish = await run(backend, task())
    assert 0 <= finish.cached_tokens <= 40
    assert finish.cached_tokens == (40 if details == {"cached_tokens": 99} else 0)


async def test_a_cancelled_task_is_billed_its_prompt_by_its_first_chunk(
    backend: OpenAIBackend, upstream: FakeUpstream
) -> None:
    """The core bills a task that never finishes from its chunks: the first carries the prompt."""
    upstream.chat = sse(delta("a"), delta("b"), delta("c", finish="stop"))
    stream = backend.generate(task())
    first, second = await anext(stream), await anext(stream)
    await stream.aclose()  # how the agent cancels a task
    assert first == Chunk(0, "a", 1, prompt_tokens=estimate_prompt_tokens(task().messages))
    assert second == Chunk(0, "b", 1, prompt_tokens=0)


async def test_without_usage_tokens_are_counted_and_the_prompt_estimated(
    backend: OpenAIBackend, upstream: FakeUpstream
) -> None:
    upstream.chat = sse(delta("a"), delta("b"), delta("c", finish="stop"))
    *_, finish = await run(backend, task())
    assert finish == Finish((FinishReason.STOP,), estimate_prompt_tokens(task().messages), 3)
    assert estimate_prompt_tokens(task().messages) == 3 + (3 + 2) + (3 + 3)


async def test_n_choices_keep_their_indexes(backend: OpenAIBackend, upstream: FakeUpstream) -> None:
    upstream.chat = sse(delta("x", 0), delta("y", 1), delta("", 1, "length"), delta("", 0, "stop"))
    items = await run(backend, task(n=2))
    assert upstream.requests[-1][2]["n"] == 2
    assert items == [
        Chunk(0, "x", 1, prompt_tokens=estimate_prompt_tokens(task().messages)),
        Chunk(1, "y", 1),
        Finish(
            (FinishReason.STOP, FinishReason.LENGTH), estimate_prompt_tokens(task().messages), 2
        ),
    ]


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (400, ErrorKind.INVALID_REQUEST),
        (404, ErrorKind.INVALID_REQUEST),
        (401, ErrorKind.INTERNAL),
        (429, ErrorKind.RETRYABLE),
        (500, ErrorKind.RETRYABLE),
        (503, ErrorKind.RETRYABLE),
    ],
)
async def test_upstream_status_codes_map_to_error_kinds(
    backend: OpenAIBackend, upstream: FakeUpstream, code: int, kind: ErrorKind
) -> None:
    upstream.chat = status(
        code, {"error": {"message": "context too long", "type": "x", "code": code}}
    )
    error = await failure(backend, task())
    assert error.kind == kind
    assert error.details == {"upstream_status": str(code)}
    if kind is ErrorKind.INVALID_REQUEST:
        assert error.message == "context too long"
    if code == 401:
        assert "context too long" not in error.message  # the worker's problem, not the client's


async def test_dropped_before_any_token_is_retryable(
    backend: OpenAIBackend, upstream: FakeUpstream
) -> None:
    upstream.chat = drop
    assert (await failure(backend, task())).kind == ErrorKind.RETRYABLE


async def test_stream_cut_after_a_token_is_internal(
    backend: OpenAIBackend, upstream: FakeUpstream
) -> None:
    upstream.chat = sse(delta("a"), done=False)
    assert (await failure(backend, task())).kind == ErrorKind.INTERNAL


async def test_a_clean_but_empty_stream_is_internal(
    backend: OpenAIBackend, upstream: FakeUpstream
) -> None:
    """llama-cpp-python's answer to a streamed request that overflows its context."""
    upstream.chat = sse(done=False)
    error = await failure(backend, task())
    assert (error.kind, error.message) == (
        ErrorKind.INTERNAL,
        "upstream ended the stream without finishing",
    )


async def test_timeout_before_first_token_is_retryable(
    backend: OpenAIBackend, upstream: FakeUpstream
) -> None:
    upstream.chat = hang
    assert (await failure(backend, task())).kind == ErrorKind.RETRYABLE


@pytest.mark.parametrize(
    ("events", "kind"),
    [
        ([{"error": {"message": "bad stop", "code": 400}}], ErrorKind.INVALID_REQUEST),
        ([{"error": {"message": "OOM", "code": 500}}], ErrorKind.RETRYABLE),
        ([delta("a"), {"error": {"message": "OOM", "code": 500}}], ErrorKind.INTERNAL),
        (["not json"], ErrorKind.RETRYABLE),
        ([{"choices": "nonsense"}], ErrorKind.RETRYABLE),
        ([delta("a"), {"choices": [None]}], ErrorKind.INTERNAL),
    ],
)
async def test_errors_inside_the_stream(
    backend: OpenAIBackend, upstream: FakeUpstream, events: list[Any], kind: ErrorKind
) -> None:
    upstream.chat = sse(*events)
    assert (await failure(backend, task())).kind == kind


async def test_health_follows_the_models_probe(
    backend: OpenAIBackend, upstream: FakeUpstream
) -> None:
    assert (await backend.health()).healthy
    upstream.models = status(503, {"error": {"message": "loading"}})
    health = await backend.health()
    assert (health.healthy, health.gpus) == (False, ())
    assert "503" in health.message
    upstream.models = status(200, {"data": []})
    assert (await backend.health()).healthy


async def test_discovery_rejects_what_is_not_a_model_list(upstream: FakeUpstream) -> None:
    upstream.models = status(200, {"data": [{"name": "no id"}]})
    backend = OpenAIBackend(
        f"http://127.0.0.1:{upstream.port}/v1", startup_timeout=0.3, nvml=Nvml(None, ())
    )
    with pytest.raises(BackendError, match="not a model list"):
        await backend.start()
    await backend.close()


async def test_configured_models_need_no_upstream_at_start() -> None:
    backend = OpenAIBackend(
        "http://127.0.0.1:9/v1", models=["a", "b"], slots=2, nvml=Nvml(None, ())
    )
    description = await backend.start()
    health = await backend.health()
    await backend.close()
    assert [m.id for m in description.models] == ["a", "b"]
    assert description.slots == 2
    assert not health.healthy
    assert "unreachable" in health.message


async def test_discovery_gives_up_after_the_startup_timeout() -> None:
    backend = OpenAIBackend("http://127.0.0.1:9/v1", startup_timeout=0.3, nvml=Nvml(None, ()))
    with pytest.raises(BackendError, match="could not discover the models"):
        await backend.start()
    await backend.close()
