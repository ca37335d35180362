"""The calibrated cost of one engine step: max(compute, memory) plus communication and overheads."""

from __future__ import annotations

import math
from dataclasses import dataclass

from gpucloud_sim.gpus import Calibration, GpuModel, peak_flops
from gpucloud_sim.models import ModelSpec

# Pure functions of a Deployment and a StepWork, so tests and the calibration table
# compare the engine against them.

PRECISIONS = ("bf16", "fp8")
# Bytes per weight: BF16 checkpoints, or FP8 (E4M3) weights as vLLM's fp8 quantisation
# stores them. The KV cache stays BF16 (vLLM's kv_cache_dtype "auto").
WEIGHT_BYTES = {"bf16": 2, "fp8": 1}
# Tokens at which the GEMMs of a step reach half their asymptotic efficiency
# (gpus.Calibration.prefill_compute_efficiency): fewer rows than tensor-core tiles
# leave units idle. Fitted with the asymptote and the per-request overhead to the
# A100 prefill measurements (gpus.py, CALIBRATION.md). A decode step of b sequences
# is a GEMM with b rows, so the same curve makes decode compute bound only at a
# large batch.
HALF_EFFICIENCY_TOKENS = 80.0
# Decode bandwidth efficiency falls as the batch grows (more, smaller attention
# kernels over scattered KV blocks) and as tensor parallelism splits each GEMM: the
# reported range runs from ~0.75 at batch 1 towards 0.60 at batch 256. The TP term
# is small: Lambda's vLLM runs on two H100s (Llama-3-8B 5.26 ms, Llama-3-70B 29.5 ms
# median TPOT) leave little room beside the all-reduces.
BATCH_BANDWIDTH_FALLOFF = 0.02  # per doubling of the batch
TP_BANDWIDTH_FALLOFF = 0.02  # per doubling of the tensor-parallel degree
# FP8 (W8A8) kernels reach less of their peak than BF16 ones: each layer quantises its
# activations first, and the FP8 GEMMs of small batches stream weights less well.
# Lambda's vLLM run of Llama-3.1-8B-FP8 on an H100 (median TPOT 5.20 ms against 7.56
# in BF16, TTFT 62.5 ms against 62.2) gives ~0.75 of the BF16 bandwidth efficiency
# and about the BF16 FLOPS rate, half of the doubled FP8 peak.
FP8_BANDWIDTH_FACTOR = 0.75
FP8_COMPUTE_FACTOR = 0.5
# Megatron-style tensor parallelism all-reduces the activations twice per layer
# (after attention and after the MLP), in BF16.
ALL_REDUCES_PER_LAYER = 2
ACTIVATION_BYTES = 2


@dataclass(frozen=True, slots=True)
class Deployment:
    """A model served on `gpu_count` GPUs of one kind (tensor parallel) at a precision."""

    model: ModelSpec
    gpu: GpuModel
    gpu_count: int = 1
    precision: str = "bf16"

    def __post_init__(self) -> None:
        if self.gpu_count < 1:
            raise ValueError(f"gpu_count must be >= 1, not {self.gpu_count}")
        peak_flops(self.gpu, self.precision)  # ValueError: unknown precision or no FP8

    @property
    def weight_bytes(self) -> int:
        return self.model.parameters * WEIGHT_BYTES[self.precision]

    @property
    def flops(self) -> float:
        """Dense tensor FLOPS of all the GPUs together, as the kernels can use them."""
        factor = FP8_COMPUTE_FACTOR if self.precision == "fp8" else 1.0
        return peak_flops(self.gpu, self.precision) * self.gpu_count * factor

    @property
    def bandwidth(self) -> float:
        """Memory bandwidth of all the GPUs together, as the kernels can use it."""
        factor = FP8_BANDWIDTH_FACTOR if self.precision == "fp8" else 1.0
        return self.gpu.bandwidth_bytes_per_s * self.gpu_count * factor


@dataclass(slots=True)
class StepWork:
    """What one engine step computes: decode tokens and chunks of prefill."""

    decode_sequences: int = 0
    # Context tokens the decoding sequences attend to (their KV cache read).
    decode_context: int = 0
    prefill_tokens: int = 0
    # Sum over prefill chunks of n * (c + n / 2): query-key pairs of causal attention
    # for a chunk of n tokens after c computed ones.
    prefill_pairs: float = 0.0
    # KV tokens the prefill chunks read (c + n per chunk).
    prefill_context: int = 0
    # Requests whose first prefill chunk runs in this step.
    new_requests: int = 0

    def add_decode(self, context: int) -> None:
        self.decode_sequences += 1
        self.decode_context += context

    def add_prefill(self, tokens: int, computed: int, *, first: bool) -> None:
        self.prefill_tokens += tokens
        self.prefill_pairs += tokens * (computed + tokens / 2)
        self.prefill_context += computed + tokens
        self.new_requests += first

    @property
    def tokens(self) -> int:
        return self.decode_sequences + self.prefill_tokens


@dataclass(frozen=True, slots=True)
class StepCost:
    """The parts of a step's duration, in seconds."""

    compute_s: float
    memory_s: float
    communication_s: float
    overhead_s: float

    @property
    def seconds(self) -> float:
        return max(self.compute_s, self.memory_s) + self.communication_s + self.overhead_s


def compute_efficiency(calibration: Calibration, tokens: int) -> float:
    """Share of peak FLOPS reached by GEMMs over `tokens` rows."""
    return calibration.prefill_compute_efficiency * tokens / (tokens + HALF_EFFICIENCY_TOKENS)


def bandwidth_efficiency(calibration: Calibration, batch: int, gpu_count: int) -> float:
    """Share of peak bandwidth reached by a step over `batch` sequences."""
    falloff = BATCH_BANDWIDTH_FALLOFF * math.log2(max(1, batch))
    falloff += TP_BANDWIDTH_FALLOFF * math.log2(gpu_count)
    return calibration.decode_bandwidth_efficiency * (1.0 - falloff)


def step_cost(deployment: Deployment, work: StepWork) -> StepCost:
    """The duration of one step, split into its parts."""
    model, calibration = deployment.model, deployment.gpu.calibration
    tokens = work.tokens
    attention = 4.0 * model.layers * model.hidden_size
    flops = 2.0 * model.parameters * tokens
    flops += attention * (work.decode_context + work.prefill_pairs)
    compute_s = flops / (deployment.flops * compute_efficiency(calibration, max(1, tokens)))
    kv_tokens = work.decode_context + work.prefill_context + tokens
    read = deployment.weight_bytes + model.kv_bytes_per_token * kv_tokens
    batch = work.decode_sequences + (work.prefill_tokens > 0)
    efficiency = bandwidth_efficiency(calibration, batch, deployment.gpu_count)
    memory_s = read / (deployment.bandwidth * efficiency)
    overhead_s = calibration.step_overhead_s
    if work.new_requests:
        overhead_s += calibration.prefill_overhead_s
    return StepCost(compute_s, memory_s, communication_seconds(deployment, tokens), overhead_s)


def communication_seconds(deployment: Deployment, tokens: int) -> float:
    """Ring all-reduces of the activations of `tokens` tokens, twice per layer."""
    count = deployment.gpu_count
    if count == 1:
        return 0.0
    link = deployment.gpu.link
    size = tokens * deployment.model.hidden_size * ACTIVATION_BYTES
    one = link.all_reduce_latency_s + 2.0 * (count - 1) / count * size / link.bytes_per_s
    return ALL_REDUCES_PER_LAYER * deployment.model.layers * one


def decode_seconds(deployment: Deployment, batch: int, context: int) -> float:
    """One decode step of `batch` sequences holding `context` tokens each."""
    work = StepWork(decode_sequences=batch, decode_context=batch * context)
    return step_cost(deployment, work).seconds
