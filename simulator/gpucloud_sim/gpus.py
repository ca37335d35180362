"""The simulated GPU catalog: datasheet figures, calibration and the power envelope."""

from __future__ import annotations

from dataclasses import dataclass

GIB = 1024**3

# Board temperature when idle and its rise at full board power (typical air/liquid
# cooled server figures; not from a datasheet, only used to make heartbeats plausible).
IDLE_TEMPERATURE_C = 32.0
FULL_POWER_TEMPERATURE_RISE_C = 40.0
# Share of the dynamic power range drawn by a busy GPU running a single sequence;
# the rest scales with batch occupancy (memory-bound decode draws less than a full batch).
BUSY_BASE_POWER_SHARE = 0.6


@dataclass(frozen=True, slots=True)
class Calibration:
    """How much of the datasheet a serving engine reaches on this GPU, and its fixed costs.

    Fitted to published measurements; CALIBRATION.md holds the table of published
    against simulated figures. `source` says where each number comes from.
    """

    # Share of peak memory bandwidth a batch-1 decode step reaches (weights + KV read).
    decode_bandwidth_efficiency: float
    # Share of peak tensor FLOPS a large prefill GEMM reaches (the asymptote of the
    # token-count curve in cost.compute_efficiency).
    prefill_compute_efficiency: float
    # Fixed cost of a step that starts the prefill of one or more requests (input
    # preparation, kernels launched outside the decode step's CUDA graph); at batch 1
    # it is the per-request prefill overhead. Charged once per step, not per request,
    # so a burst of short prompts is not serialised by it.
    prefill_overhead_s: float
    # Fixed cost of every engine step (scheduling, kernel launches, sampling).
    step_overhead_s: float
    source: str


@dataclass(frozen=True, slots=True)
class Interconnect:
    """The GPU-to-GPU link tensor parallelism all-reduces over."""

    name: str
    # One direction, per GPU.
    bytes_per_s: float
    # Fixed latency of one small all-reduce (NCCL / vLLM custom all-reduce).
    all_reduce_latency_s: float


@dataclass(frozen=True, slots=True)
class GpuModel:
    """One GPU product: the figures the cost model and the heartbeats need."""

    key: str
    name: str
    memory_bytes: int
    bandwidth_bytes_per_s: float
    dense_bf16_flops: float
    tdp_watts: float
    idle_watts: float
    calibration: Calibration
    link: Interconnect
    # None: no FP8 tensor cores (Ampere); FP8 serving is refused.
    dense_fp8_flops: float | None = None

    def power_watts(self, busy: float, occupancy: float) -> float:
        """Board power for a busy share (0..1) of the interval at a batch occupancy (0..1)."""
        load = busy * (BUSY_BASE_POWER_SHARE + (1.0 - BUSY_BASE_POWER_SHARE) * occupancy)
        return self.idle_watts + (self.tdp_watts - self.idle_watts) * _clamp(load)

    def temperature_celsius(self, power_watts: float) -> float:
        share = (power_watts - self.idle_watts) / (self.tdp_watts - self.idle_watts)
        return IDLE_TEMPERATURE_C + FULL_POWER_TEMPERATURE_RISE_C * _clamp(share)


def _clamp(value: float) -> float:
    return min(1.0, max(0.0, value))


# Calibration shared by the cards of one memory technology; CALIBRATION.md holds every
# published figure against the sim's. Decode, HBM cards: bandwidth efficiency and step
# overhead fitted by minimax to vLLM's Llama-3-8B decode on H100 SXM and A100 SXM
# (Lambda's vllm-benchmark, vLLM 0.6: median TPOT 7.56 and 12.01 ms; newer vLLM:
# 6.48 ms on H100, ~13.3 ms on an A100 40GB): 0.76 and 0.65 ms, every figure within
# 8 % and the resulting utilisation inside the 0.60-0.75 serving engines report.
# GDDR cards (0.75-0.87 reported for RTX 4090 / A6000): 0.86, fitted to llama.cpp's
# published F16 batch-1 decode (github.com/XiongjieDai/GPU-Benchmarks-on-LLM-Inference:
# RTX 4090 Llama-3-8B 54.84 t/s and Llama-2-7B 60.78 t/s, RTX A6000 Llama-2-7B 44.01
# t/s) with the same step overhead, each within 7 %. Prefill: GEMM efficiency
# asymptote, its half-saturation (cost.py) and the prefill overhead fitted by minimax
# to TensorRT-LLM's A100 prefill (35 % of peak at 128 tokens, ~70 % at 2k),
# Databricks' MPT-7B TTFT (46 ms, 512 tokens, A100-40GB) and Lambda's A100 TTFT
# (126.7 ms for ten prompts, 1369 tokens): 0.70, 80 tokens and 4 ms, each within
# 12 %. H100: 0.50, between Lambda's TTFTs of the same prompts for Llama-3-8B (62.2
# ms, which alone gives 0.41) and Llama-3-70B on two H100s (218.9 ms, 0.50): vLLM's
# prefill reaches ~400-500 of the H100's 989 dense TFLOPS, so an H100 prefills about
# twice as fast as an A100, not three times. The GDDR cards take the A100's figure
# (no published vLLM prefill on them here).
HBM_DECODE_BANDWIDTH_EFFICIENCY = 0.76
GDDR_DECODE_BANDWIDTH_EFFICIENCY = 0.86
STEP_OVERHEAD_S = 0.65e-3
PREFILL_COMPUTE_EFFICIENCY = 0.70
H100_PREFILL_COMPUTE_EFFICIENCY = 0.50
PREFILL_OVERHEAD_S = 4.0e-3
_HBM_SOURCE = (
    "decode: minimax fit to vLLM Llama-3-8B TPOT (Lambda vllm-benchmark H100 7.56 ms, "
    "A100 12.01 ms; vLLM 0.21-0.23 H100 6.48 ms, A100-40GB ~13.3 ms); prefill: minimax fit "
    "to TensorRT-LLM A100 MFU (35 % at 128, ~70 % at 2k tokens), Databricks MPT-7B "
    "A100-40GB TTFT 46 ms and Lambda A100 TTFT 126.7 ms (H100: Lambda 8B and 70B TTFTs)"
)
_GDDR_SOURCE = (
    "decode: fit to llama.cpp F16 batch-1 decode (RTX 4090 Llama-3-8B 54.84 t/s, "
    "Llama-2-7B 60.78 t/s; RTX A6000 Llama-2-7B 44.01 t/s), within the 0.75-0.87 reported for GDDR "
    "cards; step overhead and prefill as the HBM cards (no published GDDR prefill here)"
)

# All-reduce latency of one small message: 11 us over NVLink, fitted with cost.py's
# TP falloff to Lambda's vLLM runs on two H100s (Llama-3-8B and Llama-3-70B median
# TPOT, both within 10 %); nccl-tests and vLLM's custom all-reduce report 5-15 us.
# ~25 us over PCIe without peer-to-peer (not fitted).
NVLINK_ALL_REDUCE_LATENCY_S = 11e-6
PCIE_ALL_REDUCE_LATENCY_S = 25e-6

# Memory sizes: NVIDIA's "80GB"/"48GB"/"24GB" boards expose binary gigabytes
# (nvidia-smi reports 81920 MiB on an A100 80GB), hence GiB below.
# Throughput is the DENSE figure: datasheets print the 2:4-sparsity figure, which
# is twice the dense one; we halve it where the datasheet gives only the sparse one.
# Idle power is a typical nvidia-smi reading, not a datasheet figure.
# The GDDR cards share one fit (their prefill takes the A100's figure: no published
# prefill measurement for them was at hand).
_GDDR_CALIBRATION = Calibration(
    GDDR_DECODE_BANDWIDTH_EFFICIENCY,
    PREFILL_COMPUTE_EFFICIENCY,
    PREFILL_OVERHEAD_S,
    STEP_OVERHEAD_S,
    _GDDR_SOURCE,
)

GPUS: dict[str, GpuModel] = {
    "a100": GpuModel(
        key="a100",
        name="NVIDIA A100 80GB SXM",
        # "NVIDIA A100 Tensor Core GPU" datasheet (nvidia.com, a100 datasheet PDF,
        # A100 80GB SXM column): GPU Memory 80GB HBM2e.
        memory_bytes=80 * GIB,
        # Same datasheet: GPU Memory Bandwidth 2,039 GB/s.
        bandwidth_bytes_per_s=2039e9,
        # Same datasheet: BFLOAT16 Tensor Core 312 TFLOPS (624 TFLOPS with sparsity).
        dense_bf16_flops=312e12,
        # Same datasheet: Max Thermal Design Power (TDP) 400W.
        tdp_watts=400.0,
        idle_watts=55.0,
        calibration=Calibration(
            HBM_DECODE_BANDWIDTH_EFFICIENCY,
            PREFILL_COMPUTE_EFFICIENCY,
            PREFILL_OVERHEAD_S,
            STEP_OVERHEAD_S,
            _HBM_SOURCE,
        ),
        # Same datasheet: NVLink 600GB/s (both directions together).
        link=Interconnect("NVLink 3", 300e9, NVLINK_ALL_REDUCE_LATENCY_S),
        # No FP8 tensor cores on Ampere (the datasheet lists TF32, BF16, FP16, INT8).
        dense_fp8_flops=None,
    ),
    "h100": GpuModel(
        key="h100",
        name="NVIDIA H100 80GB SXM",
        # "NVIDIA H100 Tensor Core GPU" datasheet (nvidia.com/en-us/data-center/h100,
        # H100 SXM column): GPU Memory 80GB (HBM3).
        memory_bytes=80 * GIB,
        # Same datasheet: GPU Memory Bandwidth 3.35TB/s.
        bandwidth_bytes_per_s=3350e9,
        # Same datasheet: BFLOAT16 Tensor Core 1,979 teraFLOPS "with sparsity";
        # dense is half, 989.4 TFLOPS in the "NVIDIA H100 Tensor Core GPU Architecture"
        # whitepaper (H100 SXM5 column, Peak BF16 Tensor TFLOPS with FP32 Accumulate).
        dense_bf16_flops=989.4e12,
        # Same datasheet: Max Thermal Design Power (TDP) up to 700W (configurable).
        tdp_watts=700.0,
        idle_watts=70.0,
        calibration=Calibration(
            HBM_DECODE_BANDWIDTH_EFFICIENCY,
            H100_PREFILL_COMPUTE_EFFICIENCY,
            PREFILL_OVERHEAD_S,
            STEP_OVERHEAD_S,
            _HBM_SOURCE,
        ),
        # Same datasheet: NVLink 900GB/s (both directions together).
        link=Interconnect("NVLink 4", 450e9, NVLINK_ALL_REDUCE_LATENCY_S),
        # Same datasheet: FP8 Tensor Core 3,958 teraFLOPS with sparsity; dense 1,979.
        dense_fp8_flops=1979e12,
    ),
    "rtx4090": GpuModel(
        key="rtx4090",
        name="NVIDIA GeForce RTX 4090 24GB",
        # nvidia.com "GeForce RTX 4090" specifications: Memory Size 24 GB GDDR6X.
        memory_bytes=24 * GIB,
        # "NVIDIA ADA GPU ARCHITECTURE" whitepaper (v2.1), Appendix A, RTX 4090 column:
        # Memory Bandwidth 1008 GB/sec.
        bandwidth_bytes_per_s=1008e9,
        # Same whitepaper: Peak BF16 Tensor TFLOPS with FP32 Accumulate 165.2/330.4
        # (dense/sparse).
        dense_bf16_flops=165.2e12,
        # nvidia.com RTX 4090 specifications: Total Graphics Power (W) 450.
        tdp_watts=450.0,
        idle_watts=25.0,
        calibration=_GDDR_CALIBRATION,
        # No NVLink on the RTX 4090: PCIe 4.0 x16, 64 GB/s both directions together.
        link=Interconnect("PCIe 4.0 x16", 32e9, PCIE_ALL_REDUCE_LATENCY_S),
        # Ada whitepaper, Appendix A: Peak FP8 Tensor TFLOPS with FP32 Accumulate
        # 330.3/660.6 (dense/sparse).
        dense_fp8_flops=330.3e12,
    ),
    "a6000": GpuModel(
        key="a6000",
        name="NVIDIA RTX A6000 48GB",
        # "NVIDIA RTX A6000" datasheet (nvidia.com, proviz-print-nvidia-rtx-a6000
        # datasheet PDF): GPU Memory 48 GB GDDR6 with error-correcting code (ECC).
        memory_bytes=48 * GIB,
        # Same datasheet: Memory Bandwidth 768 GB/s.
        bandwidth_bytes_per_s=768e9,
        # Same datasheet: Tensor Performance 309.7 TFLOPS (with sparsity); dense is
        # 154.8 ("NVIDIA AMPERE GA102 GPU ARCHITECTURE" whitepaper, Appendix A,
        # RTX A6000: Peak BF16 Tensor TFLOPS with FP32 Accumulate 154.8/309.7).
        dense_bf16_flops=154.8e12,
        # Same datasheet: Max Power Consumption 300 W.
        tdp_watts=300.0,
        idle_watts=22.0,
        calibration=_GDDR_CALIBRATION,
        # Same datasheet: NVIDIA NVLink, 112.5 GB/s (bidirectional), two cards per bridge.
        link=Interconnect("NVLink bridge", 56.25e9, NVLINK_ALL_REDUCE_LATENCY_S),
        # No FP8 tensor cores on Ampere.
        dense_fp8_flops=None,
    ),
}


def peak_flops(gpu: GpuModel, precision: str) -> float:
    """Dense tensor FLOPS of one GPU at "bf16" or "fp8"; ValueError where there is none."""
    if precision == "bf16":
        return gpu.dense_bf16_flops
    if precision != "fp8":
        raise ValueError(f"unknown precision {precision!r}; use bf16 or fp8")
    if gpu.dense_fp8_flops is None:
        raise ValueError(f"{gpu.name} has no FP8 tensor cores; serve this model in bf16")
    return gpu.dense_fp8_flops


def find_gpu(key: str) -> GpuModel:
    """The catalog entry for a CLI key such as "h100"; ValueError lists the valid keys."""
    try:
        return GPUS[key.strip().lower()]
    except KeyError:
        known = ", ".join(sorted(GPUS))
        raise ValueError(f"unknown GPU {key!r}; known GPUs: {known}") from None
