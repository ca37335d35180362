"""The simulated GPU catalog: datasheet figures and the power and thermal envelope."""

from __future__ import annotations

from dataclasses import dataclass

from gpucloud_worker.backend import GpuSpec

GIB = 1024**3

# Board temperature when idle and its rise at full board power (typical air/liquid
# cooled server figures; not from a datasheet, only used to make heartbeats plausible).
IDLE_TEMPERATURE_C = 32.0
FULL_POWER_TEMPERATURE_RISE_C = 40.0
# Share of the dynamic power range drawn by a busy GPU running a single sequence;
# the rest scales with batch occupancy (memory-bound decode draws less than a full batch).
BUSY_BASE_POWER_SHARE = 0.6


@dataclass(frozen=True, slots=True)
class GpuModel:
    """One GPU product: the figures the roofline and the heartbeats need."""

    key: str
    name: str
    memory_bytes: int
    bandwidth_bytes_per_s: float
    dense_bf16_flops: float
    tdp_watts: float
    idle_watts: float

    def spec(self) -> GpuSpec:
        return GpuSpec(
            name=self.name,
            memory_total_bytes=self.memory_bytes,
            memory_bandwidth_gbps=self.bandwidth_bytes_per_s / 1e9,
            bf16_tflops=self.dense_bf16_flops / 1e12,
        )

    def power_watts(self, busy: float, occupancy: float) -> float:
        """Board power for a busy share (0..1) of the interval at a batch occupancy (0..1)."""
        load = busy * (BUSY_BASE_POWER_SHARE + (1.0 - BUSY_BASE_POWER_SHARE) * occupancy)
        return self.idle_watts + (self.tdp_watts - self.idle_watts) * _clamp(load)

    def temperature_celsius(self, power_watts: float) -> float:
        share = (power_watts - self.idle_watts) / (self.tdp_watts - self.idle_watts)
        return IDLE_TEMPERATURE_C + FULL_POWER_TEMPERATURE_RISE_C * _clamp(share)


def _clamp(value: float) -> float:
    return min(1.0, max(0.0, value))


# Memory sizes: NVIDIA's "80GB"/"48GB"/"24GB" boards expose binary gigabytes
# (nvidia-smi reports 81920 MiB on an A100 80GB), hence GiB below.
# Throughput is the DENSE figure: datasheets print the 2:4-sparsity figure, which
# is twice the dense one; we halve it where the datasheet gives only the sparse one.
# Idle power is a typical nvidia-smi reading, not a datasheet figure.
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
    ),
}


def find_gpu(key: str) -> GpuModel:
    """The catalog entry for a CLI key such as "h100"; ValueError lists the valid keys."""
    try:
        return GPUS[key.strip().lower()]
    except KeyError:
        known = ", ".join(sorted(GPUS))
        raise ValueError(f"unknown GPU {key!r}; known GPUs: {known}") from None
