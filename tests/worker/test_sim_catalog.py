"""The sim's GPU and model catalogs and its memory planning."""

from __future__ import annotations

import math

import pytest

from gpucloud_sim import GPUS, MODELS, find_gpu, find_model, memory, roofline
from gpucloud_worker.sim import SimBackend

LLAMA_8B = "meta-llama/Llama-3.1-8B-Instruct"
LLAMA_70B = "meta-llama/Llama-3.1-70B-Instruct"
QWEN_32B = "Qwen/Qwen2.5-32B-Instruct"


def test_gpu_catalog_keys_are_the_cli_names() -> None:
    assert set(GPUS) == {"a100", "h100", "rtx4090", "a6000"}
    assert find_gpu(" H100 ").name == "NVIDIA H100 80GB SXM"


def test_unknown_gpu_key_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="a100, a6000, h100, rtx4090"):
        find_gpu("v100")


async def test_the_worker_describes_gpus_in_datasheet_units() -> None:
    [spec] = (await SimBackend("h100").start()).gpus
    assert spec.memory_total_bytes == 80 * 1024**3
    assert spec.memory_bandwidth_gbps == pytest.approx(3350.0)
    assert spec.bf16_tflops == pytest.approx(989.4)


def test_model_found_by_id_or_short_name() -> None:
    assert find_model("llama-3.1-8b-instruct").id == LLAMA_8B
    with pytest.raises(ValueError, match="known models"):
        find_model("gpt-4o")


def test_kv_cache_per_token_follows_the_architecture() -> None:
    # 2 (K and V) x 32 layers x 8 KV heads x 128 dims x 2 bytes
    assert find_model(LLAMA_8B).kv_bytes_per_token == 131_072


def test_70b_is_not_served_on_an_rtx4090() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        SimBackend("rtx4090", [LLAMA_70B])
    for gpu in GPUS.values():
        assert LLAMA_70B not in {model.id for model in memory.default_models(gpu)}


def test_70b_is_served_on_two_h100s() -> None:
    backend = SimBackend("h100", [LLAMA_70B], gpu_count=2)
    assert backend.slots >= memory.MIN_KV_SLOTS


def test_32b_fits_an_a100_but_not_an_a6000() -> None:
    assert memory.fits([find_model(QWEN_32B)], find_gpu("a100"))
    assert not memory.fits([find_model(QWEN_32B)], find_gpu("a6000"))


def test_models_that_do_not_fit_together_are_refused() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        SimBackend("rtx4090", [LLAMA_8B, "mistralai/Mistral-7B-Instruct-v0.3"])


def test_every_gpu_serves_the_small_llama_by_default() -> None:
    for key in GPUS:
        backend = SimBackend(key)
        assert backend.models[0].id == LLAMA_8B
        assert memory.fits(backend.models, backend.gpu)


@pytest.mark.parametrize("key", sorted(GPUS))
def test_slots_come_from_memory_left_for_kv_cache(key: str) -> None:
    backend = SimBackend(key)
    gpu = backend.gpu
    weights = sum(model.parameters * 2 for model in backend.models)
    per_slot = 4096 * max(model.kv_bytes_per_token for model in backend.models)
    reserve = memory.RUNTIME_RESERVE_BYTES  # CUDA context, activations: 1.5 GiB per GPU
    expected = min(64, math.floor((0.9 * gpu.memory_bytes - weights - reserve) / per_slot))
    assert backend.slots == expected


def test_rtx4090_holds_10_llama_8b_sequences_of_4k() -> None:
    # (0.9 x 24 GiB - 16.06 GB of weights - 1.5 GiB runtime reserve) / 512 MiB per slot
    assert SimBackend("rtx4090", [LLAMA_8B]).slots == 10


def test_more_memory_gives_more_slots() -> None:
    small = SimBackend("rtx4090", [LLAMA_8B]).slots
    large = SimBackend("a6000", [LLAMA_8B]).slots
    assert large > small


async def test_start_describes_gpus_models_slots_and_speed() -> None:
    backend = SimBackend("a6000", gpu_count=2)
    description = await backend.start()
    assert description.backend == "sim"
    assert [gpu.name for gpu in description.gpus] == ["NVIDIA RTX A6000 48GB"] * 2
    assert [offer.id for offer in description.models] == [m.id for m in backend.models]
    assert description.models[0].owned_by == "meta-llama"
    assert description.slots == backend.slots
    speed = roofline.tokens_per_second(backend.models[0], backend.gpu, 2)
    assert description.speed == pytest.approx(speed)


def test_faster_memory_gives_a_faster_worker() -> None:
    model = find_model(LLAMA_8B)
    speeds = [roofline.tokens_per_second(model, find_gpu(key)) for key in ("a6000", "a100")]
    assert speeds[0] < speeds[1]


def test_catalog_models_have_owners_and_contexts() -> None:
    for model in MODELS:
        assert model.owned_by == model.id.split("/")[0]
        assert model.max_context >= 4096  # Llama-2-7B: 4k, Llama-3-8B: 8k


@pytest.mark.parametrize("speed", [-1.0, math.nan])
def test_speed_must_not_be_negative(speed: float) -> None:
    with pytest.raises(ValueError, match="speed"):
        SimBackend("a100", speed=speed)
