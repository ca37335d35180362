"""The openai backend passes what a task sets through to its upstream, in OpenAI's shapes,
and leaves out what the task left at its default."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from fake_upstream import FakeUpstream, piece, sse, status

from gpucloud_worker.backend import (
    Chunk,
    CompletionPrompt,
    EmbeddingRequest,
    Finish,
    GenerationRequest,
    Message,
    ResponseFormat,
    Tool,
    ToolCall,
    ToolChoice,
)
from gpucloud_worker.nvml import Nvml
from gpucloud_worker.openai_backend import OpenAIBackend

HELLO = (Message("user", "hello"),)
WEATHER = Tool(
    "weather",
    "Today's weather in a city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    strict=True,
)
BASE = {
    "model": "m",
    "messages": [{"role": "user", "content": "hello"}],
    "stream": True,
    "stream_options": {"include_usage": True},
}


@pytest.fixture
async def backend(upstream: FakeUpstream) -> AsyncIterator[OpenAIBackend]:
    backend = OpenAIBackend(
        f"http://127.0.0.1:{upstream.port}/v1",
        embedding_models={"embed": 4},
        read_timeout=0.5,
        nvml=Nvml(None, ()),
    )
    await backend.start()
    yield backend
    await backend.close()


def task(**options: Any) -> GenerationRequest:
    return GenerationRequest("t1", "m", options.pop("messages", HELLO), max_tokens=0, **options)


async def sent(backend: OpenAIBackend, upstream: FakeUpstream, request: GenerationRequest) -> Any:
    """The body of the (last) upstream request that `request` made."""
    async for _ in backend.generate(request):
        pass
    return upstream.requests[-1][2]


async def test_defaults_are_left_out(backend: OpenAIBackend, upstream: FakeUpstream) -> None:
    """tool_choice none without tools, auto with them, parallel calls, text format: each
    upstream does those anyway, and not all of them accept the fields."""
    assert await sent(backend, upstream, task()) == BASE
    request = task(
        tools=(WEATHER,),
        tool_choice=ToolChoice("auto"),
        parallel_tool_calls=True,
        response_format=ResponseFormat("text"),
    )
    body = await sent(backend, upstream, request)
    assert set(body) == {*BASE, "tools"}


async def test_tools_go_in_openais_function_shape(
    backend: OpenAIBackend, upstream: FakeUpstream
) -> None:
    bare = Tool("now")  # no description, no parameters, strictness unsaid
    body = await sent(
        backend, upstream, task(tools=(WEATHER, bare), tool_choice=ToolChoice("auto"))
    )
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "description": "Today's weather in a city",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
                "strict": True,
            },
        },
        {"type": "function", "function": {"name": "now"}},
    ]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (ToolChoice("none"), "none"),
        (ToolChoice("required"), "required"),
        (ToolChoice("function", "weather"), {"type": "function", "function": {"name": "weather"}}),
    ],
)
async def test_a_tool_choice_other_than_the_default_is_sent(
    backend: OpenAIBackend, upstream: FakeUpstream, choice: ToolChoice, expected: Any
) -> None:
    body = await sent(backend, upstream, task(tools=(WEATHER,), tool_choice=choice))
    assert body["tool_choice"] == expected


async def test_parallel_tool_calls_is_sent_only_when_off(
    backend: OpenAIBackend, upstream: FakeUpstream
) -> None:
    body = await sent(backend, upstream, task(tools=(WEATHER,), parallel_tool_calls=False))
    assert body["parallel_tool_calls"] is False


@pytest.mark.parametrize(
    ("response_format", "expected"),
    [
        (ResponseFormat("json_object"), {"type": "json_object"}),
        (
            ResponseFormat("json_schema", "answer", {"type": "object"}, strict=True),
            {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": {"type": "object"}, "strict": True},
            },
        ),
        (
            ResponseFormat("json_schema", "answer", {"type": "object"}),
            {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": {"type": "object"}},
            },
        ),
    ],
)
async def test_response_format_is_sent(
    backend: OpenAIBackend,
    upstream: FakeUpstream,
    response_format: ResponseFormat,
    expected: dict[str, Any],
) -> None:
    body = await sent(backend, upstream, task(response_format=response_format))
    assert body["response_format"] == expected


async def test_penalties_logit_bias_and_logprobs_are_sent(
    backend: OpenAIBackend, upstream: FakeUpstream
) -> None:
    request = task(
        presence_penalty=0.5,
        frequency_penalty=-0.25,
        logit_bias={50256: -100.0, 7: 2.5},
        logprobs=True,
        top_logprobs=3,
    )
    body = await sent(backend, upstream, request)
    assert body == {
        **BASE,
        "presence_penalty": 0.5,
        "frequency_penalty": -0.25,
        "logit_bias": {"50256": -100.0, "7": 2.5},  # JSON keys are text
        "logprobs": True,
        "top_logprobs": 3,
    }


async def test_logprobs_without_alternatives_send_no_top_logprobs(
    backend: OpenAIBackend, upstream: FakeUpstream
) -> None:
    body = await sent(backend, upstream, task(logprobs=True))
    assert (body["logprobs"], "top_logprobs" in body) == (True, False)


async def test_messages_carry_names_tool_calls_and_the_calls_they_answer(
    backend: OpenAIBackend, upstream: FakeUpstream
) -> None:
    messages = (
        Message("user", "weather in Oslo?", name="ann"),
        Message("assistant", "", tool_calls=(ToolCall("call_1", "weather", '{"city":"Oslo"}'),)),
        Message("tool", "12 C, rain", tool_call_id="call_1"),
    )
    body = await sent(backend, upstream, task(messages=messages, tools=(WEATHER,)))
    assert body["messages"] == [
        {"role": "user", "content": "weather in Oslo?", "name": "ann"},
        {
            "role": "assistant",
            "content": "",  # llama-cpp-python refuses null and fails without it
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city":"Oslo"}'},
                }
            ],
        },
        {"role": "tool", "content": "12 C, rain", "tool_call_id": "call_1"},
    ]


async def test_a_text_completion_posts_each_prompt_with_the_tasks_parameters(
    backend: OpenAIBackend, upstream: FakeUpstream
) -> None:
    """One request per prompt: llama-cpp-python and Ollama take a single prompt only."""
    upstream.completions = sse(
        piece("x", 0), piece("y", 1), piece("", 0, "stop"), piece("", 1, "length")
    )
    request = GenerationRequest(
        "t1", "m", (), max_tokens=5, temperature=0.2, stop=("\n",), n=2, seed=3,
        logprobs=True, top_logprobs=2,
        completion=CompletionPrompt(("Once", "Twice"), suffix=" end."),
    )  # fmt: skip
    items = [item async for item in backend.generate(request)]
    assert [(path, body["prompt"]) for path, _, body in upstream.requests[-2:]] == [
        ("/v1/completions", "Once"),
        ("/v1/completions", "Twice"),
    ]
    assert upstream.requests[-1][2] == {
        "model": "m",
        "prompt": "Twice",
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 5,
        "temperature": 0.2,
        "stop": ["\n"],
        "seed": 3,
        "n": 2,
        "suffix": " end.",
        "logprobs": 2,  # the legacy form: how many alternatives
    }
    # Choice p*n+j is prompt p's jth.
    assert [(c.index, c.text) for c in items if isinstance(c, Chunk)] == [
        (0, "x"), (1, "y"), (2, "x"), (3, "y"),
    ]  # fmt: skip
    assert isinstance(items[-1], Finish)
    assert len(items[-1].reasons) == 4


async def test_a_single_prompt_without_options_sends_no_options(
    backend: OpenAIBackend, upstream: FakeUpstream
) -> None:
    request = GenerationRequest("t1", "m", (), 0, completion=CompletionPrompt(("Once",)))
    body = await sent(backend, upstream, request)
    assert body == {**{k: v for k, v in BASE.items() if k != "messages"}, "prompt": "Once"}


async def test_embeddings_post_the_inputs_and_return_unit_vectors_in_input_order(
    backend: OpenAIBackend, upstream: FakeUpstream
) -> None:
    upstream.embeddings = status(200, {
        "data": [
            {"object": "embedding", "index": 1, "embedding": [0.0, 0.0, 0.0, 2.0]},
            {"object": "embedding", "index": 0, "embedding": [3.0, 4.0, 0.0, 0.0]},
        ],
        "usage": {"prompt_tokens": 7, "total_tokens": 7},
    })  # fmt: skip
    request = EmbeddingRequest("t1", "embed", ("hello", (1, 2, 3)))
    embeddings = await backend.embed(request)
    path, _, body = upstream.requests[-1]
    assert (path, body) == (
        "/v1/embeddings",
        {"model": "embed", "input": ["hello", [1, 2, 3]], "encoding_format": "float"},
    )
    assert embeddings.vectors == ((0.6, 0.8, 0.0, 0.0), (0.0, 0.0, 0.0, 1.0))
    assert embeddings.prompt_tokens == 7


@pytest.mark.parametrize(("dimensions", "sent_dimensions"), [(4, None), (2, 2)])
async def test_embedding_dimensions_are_sent_unless_the_models_own(
    backend: OpenAIBackend, upstream: FakeUpstream, dimensions: int, sent_dimensions: int | None
) -> None:
    """vLLM refuses `dimensions` for a model of one length, even that length."""
    vector = [1.0] * dimensions
    upstream.embeddings = status(200, {"data": [{"index": 0, "embedding": vector}]})
    embeddings = await backend.embed(EmbeddingRequest("t1", "embed", ("a",), dimensions))
    assert upstream.requests[-1][2].get("dimensions") == sent_dimensions
    assert len(embeddings.vectors[0]) == dimensions
    assert embeddings.prompt_tokens == 0  # the upstream did not say
