"""Embedding models in the catalog, in the default choice, and on the engine timeline
as prefill-only sequences."""

from __future__ import annotations

import pytest

from gpucloud_sim import GPUS, cost, find_gpu, memory
from gpucloud_sim.engine import GpuEngine
from gpucloud_sim.kv import BLOCK_TOKENS
from gpucloud_sim.models import CATALOG, EMBEDDING_MODELS, MODELS, find_model
from gpucloud_sim.sched import Seq

BGE_SMALL = "BAAI/bge-small-en-v1.5"
NOMIC = "nomic-ai/nomic-embed-text-v1.5"
LLAMA_8B = "meta-llama/Llama-3.1-8B-Instruct"


def test_embedding_models_follow_their_bert_configs() -> None:
    assert len(EMBEDDING_MODELS) >= 2
    for model in EMBEDDING_MODELS:
        assert model.embeds and model not in MODELS
        assert model.embedding_dimensions == model.hidden_size  # pooled hidden states
        assert model.kv_heads * model.head_dim == model.hidden_size  # no GQA in BERT
    small = find_model(BGE_SMALL, CATALOG)
    assert (small.parameters, small.layers, small.max_context) == (33_400_000, 12, 512)
    assert [m.id for m in EMBEDDING_MODELS if m.matryoshka] == [NOMIC]
    assert not any(m.embeds for m in MODELS)


def test_the_planner_catalog_holds_generation_models_only() -> None:
    with pytest.raises(ValueError, match="unknown model"):
        find_model(BGE_SMALL)
    assert find_model("bge-small-en-v1.5", CATALOG).id == BGE_SMALL


@pytest.mark.parametrize("key", sorted(GPUS))
def test_every_gpu_serves_a_small_embedding_model_by_default(key: str) -> None:
    gpu = find_gpu(key)
    chosen = memory.default_models(gpu)
    assert chosen[0].id == LLAMA_8B
    assert [m.id for m in chosen if m.embeds] == [BGE_SMALL]
    assert memory.fits(chosen, gpu)


def test_an_embedding_model_takes_only_its_forward_passes_blocks() -> None:
    gpu = find_gpu("rtx4090")
    llama, bge = find_model(LLAMA_8B), find_model(BGE_SMALL, CATALOG)
    alone, shared = GpuEngine(gpu, [llama]), GpuEngine(gpu, [llama, bge])
    assert shared.context_limit(bge) == 512
    # Llama loses the embedder's weights and working blocks, not half its KV cache.
    lost = (alone.context_limit(llama) - shared.context_limit(llama)) * llama.kv_bytes_per_token
    taken = bge.weight_bytes + shared.embedding_blocks(bge) * BLOCK_TOKENS * bge.kv_bytes_per_token
    assert lost == pytest.approx(taken, abs=BLOCK_TOKENS * llama.kv_bytes_per_token)
    assert taken < 200e6


def test_a_prefill_only_sequence_ends_with_its_prompt() -> None:
    gpu, bge = find_gpu("h100"), find_model(BGE_SMALL, CATALOG)
    engine = GpuEngine(gpu, [bge])
    told: list[Seq] = []
    [seq] = engine.add(bge, 300, 0, on_token=told.append)
    step = engine.step()
    assert step is not None and step.finished == [seq] and step.emitted == [seq]
    work = cost.StepWork()
    work.add_prefill(300, 0, first=True)
    assert step.seconds == pytest.approx(cost.step_cost(cost.Deployment(bge, gpu), work).seconds)
    assert engine.step() is None
    assert engine.kv_used_bytes() == 0


def test_a_long_input_is_prefilled_in_chunks_of_the_step_budget() -> None:
    gpu, nomic = find_gpu("a100"), find_model(NOMIC, CATALOG)
    engine = GpuEngine(gpu, [nomic])
    budget = engine.config.max_num_batched_tokens
    [seq] = engine.add(nomic, 4 * budget, 0)
    steps = []
    while (step := engine.step()) is not None:
        steps.append(step)
    assert len(steps) == 4
    assert [s.emitted for s in steps] == [[], [], [], [seq]]


def test_negative_max_tokens_are_refused() -> None:
    bge = find_model(BGE_SMALL, CATALOG)
    with pytest.raises(ValueError, match="max tokens"):
        GpuEngine(find_gpu("h100"), [bge]).add(bge, 10, -1)
