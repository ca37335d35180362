"""SimBackend.embed: unit vectors, deterministic and distinct, shortened for Matryoshka
models, billed by input tokens and timed as one prefill on the engine."""

from __future__ import annotations

import asyncio
import math

import pytest

from gpucloud_common.tokens import text_tokens
from gpucloud_sim import cost
from gpucloud_sim.models import CATALOG, find_model
from gpucloud_worker.backend import BackendError, EmbeddingRequest, ErrorKind
from gpucloud_worker.sim import SimBackend

LLAMA_8B = "meta-llama/Llama-3.1-8B-Instruct"
BGE_SMALL = "BAAI/bge-small-en-v1.5"
NOMIC = "nomic-ai/nomic-embed-text-v1.5"
TEXTS = (
    "The cat sat on the mat.",
    "The cat sat on the mat!",
    "A cat sat on a mat.",
    "Quarterly revenue grew by four percent.",
)


def request(
    *inputs: str | tuple[int, ...], model: str = BGE_SMALL, dimensions: int | None = None
) -> EmbeddingRequest:
    return EmbeddingRequest("task", model, inputs, dimensions)


def cosine(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


@pytest.fixture
def backend() -> SimBackend:
    return SimBackend("h100", [LLAMA_8B, BGE_SMALL, NOMIC], speed=0)


async def test_vectors_are_unit_length_of_the_models_size(backend: SimBackend) -> None:
    result = await backend.embed(request(*TEXTS))
    assert len(result.vectors) == len(TEXTS)
    for vector in result.vectors:
        assert len(vector) == 384
        assert math.fsum(x * x for x in vector) == pytest.approx(1.0)


async def test_same_text_same_vector_across_workers_other_text_other_vector(
    backend: SimBackend,
) -> None:
    first = await backend.embed(request(*TEXTS))
    again = await SimBackend("a100", [BGE_SMALL], speed=0).embed(request(*TEXTS))
    assert first.vectors == again.vectors
    assert len(set(first.vectors)) == len(TEXTS)
    nomic = await backend.embed(request(TEXTS[0], model=NOMIC))
    assert nomic.vectors[0][:384] != first.vectors[0]  # each model its own space


async def test_texts_sharing_words_are_closer(backend: SimBackend) -> None:
    same, punctuated, similar, unrelated = (await backend.embed(request(*TEXTS))).vectors
    assert cosine(same, punctuated) > cosine(same, similar) > cosine(same, unrelated)
    assert cosine(same, similar) > 0.3 > abs(cosine(same, unrelated))


async def test_token_ids_are_embedded_from_the_ids(backend: SimBackend) -> None:
    result = await backend.embed(request((101, 2023, 102), (101, 2023, 102), (7, 8)))
    assert result.vectors[0] == result.vectors[1] != result.vectors[2]
    assert result.prompt_tokens == 3 + 3 + 2


async def test_prompt_tokens_are_the_inputs_tokens(backend: SimBackend) -> None:
    result = await backend.embed(request(*TEXTS, (1, 2)))
    assert result.prompt_tokens == sum(text_tokens(t) for t in TEXTS) + 2


async def test_a_matryoshka_model_cuts_and_renormalises(backend: SimBackend) -> None:
    full = (await backend.embed(request(TEXTS[0], model=NOMIC))).vectors[0]
    short = (await backend.embed(request(TEXTS[0], model=NOMIC, dimensions=64))).vectors[0]
    assert len(full) == 768 and len(short) == 64
    scale = math.sqrt(math.fsum(x * x for x in full[:64]))
    assert short == pytest.approx([x / scale for x in full[:64]])


@pytest.mark.parametrize(("model", "dimensions"), [(BGE_SMALL, 128), (NOMIC, 1024), (NOMIC, 0)])
async def test_dimensions_the_model_cannot_give_are_refused(
    backend: SimBackend, model: str, dimensions: int
) -> None:
    with pytest.raises(BackendError) as error:
        await backend.embed(request("hello", model=model, dimensions=dimensions))
    assert (error.value.kind, error.value.details["param"]) == (
        ErrorKind.INVALID_REQUEST,
        "dimensions",
    )


async def test_an_input_past_the_context_is_refused(backend: SimBackend) -> None:
    with pytest.raises(BackendError) as error:
        await backend.embed(request("x" * 4 * 513))
    assert error.value.details == {"code": "context_length_exceeded", "param": "input"}


async def test_a_chat_model_does_not_embed(backend: SimBackend) -> None:
    with pytest.raises(BackendError) as error:
        await backend.embed(request("hello", model=LLAMA_8B))
    assert (error.value.kind, error.value.details["param"]) == (ErrorKind.INVALID_REQUEST, "model")


async def test_embedding_is_one_prefill_step_on_the_timeline(backend: SimBackend) -> None:
    inputs = ("word " * 100, "other " * 30)
    await backend.embed(request(*inputs))
    work = cost.StepWork()
    for text in inputs:  # both inputs in one step, each a first chunk, no decode
        work.add_prefill(text_tokens(text), 0, first=True)
    deployment = cost.Deployment(find_model(BGE_SMALL, CATALOG), backend.gpu)
    assert backend.engine.now == pytest.approx(cost.step_cost(deployment, work).seconds)
    assert backend.engine.kv_used_bytes() == 0  # no KV cache kept after
    assert backend.active_sequences == 0


async def test_no_inputs_embed_to_nothing(backend: SimBackend) -> None:
    result = await backend.embed(request())
    assert (result.vectors, result.prompt_tokens, backend.engine.now) == ((), 0, 0.0)


async def test_a_cancelled_embedding_frees_its_sequences() -> None:
    backend = SimBackend("rtx4090", [BGE_SMALL], speed=1.0)
    task = asyncio.create_task(backend.embed(request(*(["word " * 400] * 64))))
    while backend.active_sequences == 0:
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert backend.active_sequences == 0
    await backend.close()
