"""The uncalibrated roofline: closed-form prefill and decode times (superseded by cost.py).

The engine (engine.py) runs the calibrated step cost of cost.py; these formulas stay
for the tests that pin them until those move to the engine.
"""

from __future__ import annotations

from collections.abc import Mapping

from gpucloud_sim import cost
from gpucloud_sim.gpus import GpuModel
from gpucloud_sim.models import ModelSpec

# Pure functions, so tests compare the simulation against them. A worker with several
# GPUs is tensor parallel: bandwidth and compute add up (communication is ignored).

# Share of peak dense tensor throughput reached in prefill (large GEMMs; vLLM and
# TensorRT-LLM report 40-60 % model FLOPs utilisation on long prompts).
PREFILL_COMPUTE_EFFICIENCY = 0.5
# Share of peak memory bandwidth reached while decoding (weights and KV cache
# streamed once per step; 60-80 % is what tuned kernels achieve).
DECODE_BANDWIDTH_EFFICIENCY = 0.7
# Share of peak tensor throughput reached by the small decode GEMMs once a large
# batch makes the step compute bound.
DECODE_COMPUTE_EFFICIENCY = 0.5

# Model -> (sequences in the batch, context tokens held by those sequences).
BatchLoads = Mapping[ModelSpec, tuple[int, int]]


def prefill_seconds(
    model: ModelSpec, gpu: GpuModel, prompt_tokens: int, gpu_count: int = 1
) -> float:
    """Time to first token: 2 * params * prompt_tokens FLOPs at the achieved compute rate."""
    flops = 2.0 * model.parameters * prompt_tokens
    return flops / (gpu.dense_bf16_flops * gpu_count * PREFILL_COMPUTE_EFFICIENCY)


def decode_step_seconds(
    model: ModelSpec,
    gpu: GpuModel,
    batch_size: int,
    context_tokens: int,
    gpu_count: int = 1,
) -> float:
    """One decode step producing a token for each of `batch_size` sequences.

    Memory bound: weights plus the KV cache of all `context_tokens` of the batch are
    read once; compute bound: 2 * params FLOPs per sequence. The slower one wins.
    """
    read_bytes = model.weight_bytes + model.kv_bytes_per_token * context_tokens
    memory_s = read_bytes / (gpu.bandwidth_bytes_per_s * gpu_count * DECODE_BANDWIDTH_EFFICIENCY)
    flops = 2.0 * model.parameters * batch_size
    compute_s = flops / (gpu.dense_bf16_flops * gpu_count * DECODE_COMPUTE_EFFICIENCY)
    return max(memory_s, compute_s)


def token_interval_seconds(loads: BatchLoads, gpu: GpuModel, gpu_count: int = 1) -> float:
    """Time between two tokens of a sequence when several models share the GPU.

    The GPU runs one decode step of each model with active sequences in turn, so a
    sequence waits for the steps of all of them.
    """
    return sum(
        decode_step_seconds(model, gpu, sequences, context, gpu_count)
        for model, (sequences, context) in loads.items()
        if sequences > 0
    )


def generation_seconds(
    model: ModelSpec,
    gpu: GpuModel,
    prompt_tokens: int,
    output_tokens: int,
    batch_size: int = 1,
    gpu_count: int = 1,
) -> float:
    """Wall time of `batch_size` identical requests run in lockstep, in real GPU time.

    The first token comes out of prefill; each further token costs a decode step
    whose KV read grows by one token per sequence.
    """
    total = prefill_seconds(model, gpu, prompt_tokens, gpu_count)
    for generated in range(1, output_tokens):
        context = batch_size * (prompt_tokens + generated)
        total += decode_step_seconds(model, gpu, batch_size, context, gpu_count)
    return total


def tokens_per_second(
    model: ModelSpec, gpu: GpuModel, gpu_count: int = 1, precision: str = "bf16"
) -> float:
    """Decode speed of a single sequence with a short context, from the calibrated
    cost model the engine runs (cost.decode_seconds)."""
    deployment = cost.Deployment(model, gpu, gpu_count, precision)
    return 1.0 / cost.decode_seconds(deployment, 1, 0)
