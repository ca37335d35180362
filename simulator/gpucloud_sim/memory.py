"""GPU memory planning: which models fit, the KV cache pool and the batch slots it gives."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from gpucloud_sim.cost import WEIGHT_BYTES
from gpucloud_sim.gpus import GIB, GpuModel
from gpucloud_sim.models import EMBEDDING_MODELS, MODELS, ModelSpec

# Share of device memory the server may use (vLLM's gpu_memory_utilization default);
# the rest covers the CUDA context, activations and fragmentation.
USABLE_MEMORY_FRACTION = 0.9
# Memory the serving engine keeps back inside that share besides the weights, per
# GPU: the activation peak of a forward pass over max_num_batched_tokens, which vLLM
# measures in its profile run (~1.2 GiB for a 7-8B model at 8192 tokens), and the
# memory outside PyTorch's allocator (NCCL, cuBLAS workspaces, a few hundred MiB).
RUNTIME_RESERVE_BYTES = int(1.5 * GIB)
# Context budget of one batch slot: the KV cache a typical 4k-token conversation holds.
SLOT_CONTEXT_TOKENS = 4096
# A model is served only if, next to all served weights, the KV pool holds at least
# this many slots; a GPU that fits the weights but no batch is no use.
MIN_KV_SLOTS = 4
# Cap on the slots the core dispatches to one worker (WorkerDescription.slots): past
# ~64 sequences an 8B model's TPOT on these cards grows faster than its throughput
# (KV reads, falling bandwidth efficiency: cost.py), so the core keeps further
# requests queued where another worker may take them. The engine itself admits up to
# EngineConfig.max_num_seqs and queues the rest for KV blocks, as vLLM does.
MAX_SLOTS = 64
# Default model choice keeps at least this share of usable memory for the KV cache,
# so a worker adds a second model only when it still batches well.
DEFAULT_KV_HEADROOM = 0.3


def usable_bytes(gpu: GpuModel, gpu_count: int = 1) -> float:
    return gpu.memory_bytes * gpu_count * USABLE_MEMORY_FRACTION


def slot_kv_bytes(model: ModelSpec) -> int:
    """KV cache one slot reserves: SLOT_CONTEXT_TOKENS of context, or an embedding
    model's longest input if shorter (held only while its forward pass runs)."""
    tokens = min(SLOT_CONTEXT_TOKENS, model.max_context) if model.embeds else SLOT_CONTEXT_TOKENS
    return model.kv_bytes_per_token * tokens


def kv_pool_bytes(
    models: Iterable[ModelSpec], gpu: GpuModel, gpu_count: int = 1, precision: str = "bf16"
) -> float:
    """Usable memory left for the KV cache once the weights of `models` are resident."""
    weights = sum(model.parameters * WEIGHT_BYTES[precision] for model in models)
    return usable_bytes(gpu, gpu_count) - weights - RUNTIME_RESERVE_BYTES * gpu_count


def fits(
    models: Sequence[ModelSpec], gpu: GpuModel, gpu_count: int = 1, precision: str = "bf16"
) -> bool:
    """Whether the weights plus MIN_KV_SLOTS slots of each model fit in usable memory."""
    reserve = sum(MIN_KV_SLOTS * slot_kv_bytes(model) for model in models)
    return bool(models) and kv_pool_bytes(models, gpu, gpu_count, precision) >= reserve


def batch_slots(
    models: Sequence[ModelSpec], gpu: GpuModel, gpu_count: int = 1, precision: str = "bf16"
) -> int:
    """Sequences the KV pool holds at SLOT_CONTEXT_TOKENS each, capped at MAX_SLOTS.

    Several models share one pool, so a slot is sized for the model with the
    largest KV cache per token.
    """
    if not models:
        return 0
    per_slot = max(slot_kv_bytes(model) for model in models)
    pool = kv_pool_bytes(models, gpu, gpu_count, precision)
    return max(0, min(MAX_SLOTS, int(pool // per_slot)))


def default_models(gpu: GpuModel, gpu_count: int = 1) -> tuple[ModelSpec, ...]:
    """Catalog models taken in preference order while they fit with KV headroom, then
    the first default embedding model that fits beside them.

    The first generation model that fits is always taken; each further one only
    while the KV pool keeps DEFAULT_KV_HEADROOM of usable memory. An embedding model
    weighs little (bge-small: 67 MB) and keeps no KV cache, so it needs no headroom.
    """
    chosen: list[ModelSpec] = []
    floor = DEFAULT_KV_HEADROOM * usable_bytes(gpu, gpu_count)
    for model in (model for model in MODELS if model.default):
        candidate = [*chosen, model]
        if not fits(candidate, gpu, gpu_count):
            continue
        if chosen and kv_pool_bytes(candidate, gpu, gpu_count) < floor:
            continue
        chosen.append(model)
    for model in (model for model in EMBEDDING_MODELS if model.default):
        if fits([*chosen, model], gpu, gpu_count):
            chosen.append(model)
            break
    return tuple(chosen)
