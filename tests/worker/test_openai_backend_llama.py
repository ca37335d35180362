"""The openai backend's pass-through against llama.cpp's server (llama-cpp-python): tools,
JSON mode, logprobs, logit bias, text completions and embeddings on the tiny random model.

The model's text is gibberish, so these assert what is deterministic: what the server
constrains (a forced tool call's arguments and a JSON answer follow a grammar), what a
logit bias forces, the shapes relayed, and that what the server cannot do comes back as
the client's fault (a 400 with its reason), never as a retry, a hang or a 500.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from llama_upstream import (
    EMBED_ALIAS,
    MODEL_ALIAS,
    WIDTH,
    LlamaServer,
    require_llama,
    running_llama,
    write_tiny_llama,
)

from gpucloud_worker.backend import (
    BackendError,
    Chunk,
    CompletionPrompt,
    EmbeddingRequest,
    ErrorKind,
    Finish,
    FinishReason,
    GenerationRequest,
    Message,
    ResponseFormat,
    Tool,
    ToolCall,
    ToolChoice,
)
from gpucloud_worker.nvml import Nvml
from gpucloud_worker.openai_backend import OpenAIBackend

pytestmark = [pytest.mark.slow, pytest.mark.llama]  # `make test-llama` runs these

HELLO = (Message("user", "Say something."),)
OK = Tool(
    "ok",
    "Says whether all is well",
    {
        "type": "object",
        "properties": {"ok": {"type": "boolean"}},
        "required": ["ok"],
        "additionalProperties": False,
    },
)
A_TOKEN = 3 + ord("A")  # the byte tokens follow <unk>, <s> and </s>


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_llama()
    folder = tmp_path_factory.mktemp("models")
    write_tiny_llama(folder / "tiny-llama.gguf")
    write_tiny_llama(folder / "tiny-embed.gguf", embedding=True)
    return folder


@pytest.fixture(scope="module")
def llama(models: Path) -> Iterator[LlamaServer]:
    with running_llama(models / "tiny-llama.gguf", models / "llama.log") as server:
        yield server


@pytest.fixture(scope="module")
def embedder(models: Path) -> Iterator[LlamaServer]:
    model, log = models / "tiny-embed.gguf", models / "embed.log"
    with running_llama(model, log, "--embedding", "true", alias=EMBED_ALIAS) as server:
        yield server


@pytest.fixture
async def backend(llama: LlamaServer) -> AsyncIterator[OpenAIBackend]:
    backend = OpenAIBackend(llama.url, nvml=Nvml(None, ()))
    await backend.start()
    yield backend
    await backend.close()


@pytest.fixture
async def embedding_backend(embedder: LlamaServer) -> AsyncIterator[OpenAIBackend]:
    backend = OpenAIBackend(
        embedder.url, embedding_models={EMBED_ALIAS: WIDTH}, nvml=Nvml(None, ())
    )
    await backend.start()
    yield backend
    await backend.close()


def chat(max_tokens: int = 8, **options: Any) -> GenerationRequest:
    messages = options.pop("messages", HELLO)
    return GenerationRequest("t", MODEL_ALIAS, messages, max_tokens, seed=1, **options)


def completion(*prompts: str, max_tokens: int = 4, **options: Any) -> GenerationRequest:
    prompt = CompletionPrompt(prompts, echo=options.pop("echo", False))
    return GenerationRequest("t", MODEL_ALIAS, (), max_tokens, seed=1, completion=prompt, **options)


async def run(backend: OpenAIBackend, request: GenerationRequest) -> tuple[list[Chunk], Finish]:
    *chunks, finish = [item async for item in backend.generate(request)]
    assert isinstance(finish, Finish)
    assert all(isinstance(c, Chunk) for c in chunks)
    return chunks, finish  # type: ignore[return-value]


async def refusal(backend: OpenAIBackend, request: GenerationRequest) -> BackendError:
    with pytest.raises(BackendError) as caught:
        await run(backend, request)
    return caught.value


def cosine(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    return math.fsum(x * y for x, y in zip(a, b, strict=True))


def text(chunks: list[Chunk], index: int = 0) -> str:
    return "".join(c.text for c in chunks if c.index == index)


async def test_a_forced_tool_call_is_relayed_with_its_id_name_and_arguments(
    backend: OpenAIBackend,
) -> None:
    """llama-cpp-python constrains the arguments to the tool's schema."""
    request = chat(64, tools=(OK,), tool_choice=ToolChoice("function", "ok"))
    chunks, finish = await run(backend, request)
    calls = [call for c in chunks for call in c.tool_calls]
    first, *rest = calls
    assert (first.index, first.name) == (0, "ok")
    assert first.id
    assert all((c.index, c.id, c.name) == (0, "", "") for c in rest)  # named once
    assert json.loads("".join(c.arguments for c in calls)) in ({"ok": True}, {"ok": False})
    assert text(chunks) == ""
    assert finish.reasons == (FinishReason.TOOL_CALLS,)


@pytest.mark.parametrize("choice", ["auto", "none", "required"])
async def test_tools_with_any_other_choice_are_accepted(
    backend: OpenAIBackend, choice: str
) -> None:
    """Without a chat template that knows tools, the server answers in text."""
    request = chat(tools=(OK,), tool_choice=ToolChoice(choice), parallel_tool_calls=False)
    chunks, finish = await run(backend, request)
    assert len(text(chunks)) == 8
    assert finish.reasons == (FinishReason.LENGTH,)


async def test_a_conversation_with_tool_calls_and_results_is_accepted(
    backend: OpenAIBackend,
) -> None:
    messages = (
        *HELLO,
        Message("assistant", "", tool_calls=(ToolCall("call_1", "ok", '{"ok": true}'),)),
        Message("tool", "fine", tool_call_id="call_1"),
        Message("user", "And now?", name="ann"),
    )
    chunks, finish = await run(backend, chat(messages=messages, tools=(OK,)))
    assert len(text(chunks)) == 8
    assert finish.reasons == (FinishReason.LENGTH,)


async def test_json_mode_answers_json(backend: OpenAIBackend) -> None:
    """Grammar-constrained: JSON when it ends, a JSON text cut short when it runs out."""
    request = chat(60, response_format=ResponseFormat("json_object"))
    chunks, finish = await run(backend, request)
    answer = text(chunks)
    assert answer.startswith(("{", "["))
    if finish.reasons == (FinishReason.STOP,):
        assert isinstance(json.loads(answer), dict)
    else:
        assert finish.reasons == (FinishReason.LENGTH,)
        assert finish.completion_tokens == 60


async def test_a_json_schema_is_refused_as_the_clients_fault(backend: OpenAIBackend) -> None:
    """llama-cpp-python takes json_object only (with its own `schema` member): declare
    its models with --capabilities tools,logprobs,completions."""
    schema = ResponseFormat("json_schema", "answer", {"type": "object"}, strict=True)
    error = await refusal(backend, chat(response_format=schema))
    assert error.kind is ErrorKind.INVALID_REQUEST
    assert error.message == "response_format.type: Input should be 'text' or 'json_object'"
    assert error.details["param"] == "response_format.type"
    assert "File" not in error.message  # no traceback of the server's


async def test_logprobs_come_with_each_token(backend: OpenAIBackend) -> None:
    chunks, _ = await run(backend, chat(logprobs=True, top_logprobs=3))
    assert len(chunks) == 8
    for chunk in chunks:
        (logprob,) = chunk.logprobs
        assert logprob.token == chunk.text
        assert logprob.logprob <= 0
        assert len(logprob.top) == 3
        ranked = [t.logprob for t in logprob.top]
        assert ranked == sorted(ranked, reverse=True)


async def test_logit_bias_and_penalties_reach_the_sampler(backend: OpenAIBackend) -> None:
    request = chat(5, logit_bias={A_TOKEN: 100.0}, presence_penalty=0.5, frequency_penalty=0.1)
    chunks, _ = await run(backend, request)
    assert text(chunks) == "AAAAA"


async def test_text_completions_serve_each_prompt(backend: OpenAIBackend) -> None:
    chunks, finish = await run(backend, completion("Once upon", "Twice", max_tokens=4))
    assert [len(text(chunks, i)) for i in (0, 1)] == [4, 4]
    assert finish.reasons == (FinishReason.LENGTH, FinishReason.LENGTH)
    assert finish.completion_tokens == 8


async def test_an_echoed_completion_starts_with_its_prompt(backend: OpenAIBackend) -> None:
    """The server does not echo when streaming: the worker does, with or without logprobs."""
    for logprobs in (False, True):
        chunks, finish = await run(backend, completion("abc", echo=True, logprobs=logprobs))
        assert text(chunks).startswith("abc")
        assert len(text(chunks)) == 3 + 4
        assert finish.completion_tokens == 4
        assert sum(len(c.logprobs) for c in chunks) == (4 if logprobs else 0)


async def test_a_suffix_is_accepted(backend: OpenAIBackend) -> None:
    request = GenerationRequest(
        "t", MODEL_ALIAS, (), 3, completion=CompletionPrompt(("def f():",), suffix="\nreturn")
    )
    chunks, finish = await run(backend, request)
    assert len(text(chunks)) == 3
    assert finish.reasons == (FinishReason.LENGTH,)


async def test_embeddings_are_unit_vectors_in_input_order(
    embedding_backend: OpenAIBackend,
) -> None:
    inputs = ("hello", "world", "hello")
    embeddings = await embedding_backend.embed(EmbeddingRequest("t", EMBED_ALIAS, inputs))
    hello, world, again = embeddings.vectors
    assert all(len(v) == WIDTH for v in embeddings.vectors)
    assert all(math.isclose(cosine(v, v), 1.0) for v in embeddings.vectors)  # unit length
    assert cosine(hello, again) > 0.9999  # the same up to the batch's float rounding
    assert cosine(hello, world) < 0.999
    assert embeddings.prompt_tokens > 0


async def test_token_id_inputs_are_refused_as_the_clients_fault(
    embedding_backend: OpenAIBackend,
) -> None:
    """llama-cpp-python embeds text only."""
    with pytest.raises(BackendError) as caught:
        await embedding_backend.embed(EmbeddingRequest("t", EMBED_ALIAS, ((5, 6, 7),)))
    assert caught.value.kind is ErrorKind.INVALID_REQUEST
    assert caught.value.message.startswith("input: Input should be a valid string")
