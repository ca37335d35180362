"""Published measurements the sim is calibrated against, and the sim's figure for each.

CALIBRATION.md is `table()`; a test keeps the two in step and each row within its
tolerance. Every figure is simulated by the same engine the workers and the
profiler run, on the virtual clock, at batch 1.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from gpucloud_sim.gpus import GIB, GPUS, GpuModel
from gpucloud_sim.models import ModelSpec, find_model
from gpucloud_sim.profile import profile

# The A100 40GB SXM of Databricks' measurement: "NVIDIA A100 Tensor Core GPU"
# datasheet, A100 40GB SXM column: 40GB HBM2, 1,555 GB/s; the rest as the 80GB card.
A100_40GB = replace(GPUS["a100"], key="a100-40gb", name="NVIDIA A100 40GB SXM",
                    memory_bytes=40 * GIB, bandwidth_bytes_per_s=1555e9)  # fmt: skip
# huggingface.co/mosaicml/mpt-7b: 6.7B parameters; config.json: n_layers 32,
# d_model 4096, n_heads 32 (multi-head attention), max_seq_len 2048. Reference only,
# not served.
MPT_7B = ModelSpec(
    id="mosaicml/mpt-7b",
    owned_by="mosaicml",
    parameters=6_700_000_000,
    layers=32,
    hidden_size=4096,
    kv_heads=32,
    head_dim=128,
    max_context=2048,
    default=False,
)
LLAMA3_8B = find_model("meta-llama/Meta-Llama-3-8B-Instruct")
LLAMA2_7B = find_model("meta-llama/Llama-2-7b-chat-hf")

VLLM = "vLLM benchmark, Llama-3-8B BF16, batch ~1"
LAMBDA = "Lambda vllm-benchmark (vLLM 0.6), 10 ShareGPT prompts at once, median"
VLLM_NEW = "vLLM 0.21-0.23 single-stream runs (InferenceBench H100; johnmusgrave.com A100)"
DATABRICKS = "Databricks, LLM Inference Performance Engineering: Best Practices"
TRTLLM = "TensorRT-LLM A100 prefill: share of peak FLOPS"
MBU = "Serving engines' decode memory-bandwidth utilisation"
LLAMA_CPP = "llama.cpp F16 tg512 (XiongjieDai/GPU-Benchmarks-on-LLM-Inference)"


@dataclass(frozen=True, slots=True)
class Measurement:
    """A published figure and the setting that reproduces it on the sim.

    `metric`: "tpot_ms" / "ttft_ms" (batch 1), "mfu" (2 x params x prompt FLOPs over
    TTFT x peak) or "mbu" (weights + KV bytes read per token over TPOT x bandwidth).
    `tolerance` is relative; `low`/`high` bound a published range instead.
    """

    source: str
    gpu: GpuModel
    model: ModelSpec
    prompt_tokens: int
    output_tokens: int
    metric: str
    published: float
    tolerance: float = 0.0
    low: float = 0.0
    high: float = 0.0
    # Recorded (prompt, output) sizes of requests sent all at once, replayed; the
    # metric is then the median over them, as the benchmark reports it.
    sizes: tuple[tuple[int, int], ...] = ()
    gpu_count: int = 1
    precision: str = "bf16"

    @property
    def setting(self) -> str:
        count = f"{self.gpu_count} x " if self.gpu_count > 1 else ""
        precision = " FP8" if self.precision == "fp8" else ""
        where = f"{self.model.id.split('/')[-1]}{precision} on {count}{self.gpu.name}"
        if self.sizes:
            prompts, outputs = (sum(size[i] for size in self.sizes) for i in (0, 1))
            return f"{where}, {len(self.sizes)} requests ({prompts} in / {outputs} out)"
        return f"{where}, {self.prompt_tokens} in / {self.output_tokens} out"

    def simulate(self) -> float:
        count = len(self.sizes) or 1
        summary = profile(
            self.gpu, self.model, self.prompt_tokens, self.output_tokens,
            concurrency=count, requests=count, sizes=self.sizes,
            gpu_count=self.gpu_count, precision=self.precision,
        ).summary  # fmt: skip
        if self.metric == "tpot_ms":
            return summary.tpot_ms_p50
        if self.metric == "ttft_ms":
            return summary.ttft_ms_p50
        if self.metric == "mfu":
            flops = 2.0 * self.model.parameters * self.prompt_tokens
            return flops / (summary.ttft_ms_p50 / 1e3 * self.gpu.dense_bf16_flops)
        context = self.prompt_tokens + self.output_tokens / 2
        read = self.model.weight_bytes + self.model.kv_bytes_per_token * context
        return read / (summary.tpot_ms_p50 / 1e3 * self.gpu.bandwidth_bytes_per_s)

    def error(self, simulated: float) -> float:
        """Relative error against the figure, or 0 inside a published range."""
        if self.high:
            return 0.0 if self.low <= simulated <= self.high else float("inf")
        return (simulated - self.published) / self.published

    def within(self, simulated: float) -> bool:
        return abs(self.error(simulated)) <= self.tolerance


def _mbu(gpu: str, low: float, high: float) -> Measurement:
    return Measurement(MBU, GPUS[gpu], LLAMA3_8B, 512, 256, "mbu", 0.0, 0.0, low, high)


# github.com/LambdaLabsML/vllm-benchmark, results/prompt_10/1x{H,A}100-80GB-SXM/
# Meta-Llama-3-8B-Instruct_tp1_len2048.json: the requests' input_lens and output_lens.
_LAMBDA_IN = (13, 25, 27, 10, 329, 29, 399, 328, 4, 205)
LAMBDA_H100 = tuple(zip(_LAMBDA_IN, (120, 429, 233, 194, 101, 741, 9, 3, 6, 31), strict=True))
LAMBDA_A100 = tuple(zip(_LAMBDA_IN, (120, 507, 233, 194, 101, 741, 9, 3, 6, 31), strict=True))


# The same prompts on two H100s (tensor parallel) and in FP8 (..._tp2_len2048.json,
# Meta-Llama-3.1-8B-FP8_tp1_len2048.json); an empty answer is replayed as one token.
LAMBDA_70B_TP2 = tuple(zip(_LAMBDA_IN, (120, 661, 233, 194, 101, 741, 1, 1, 6, 35), strict=True))
LAMBDA_8B_TP2 = tuple(zip(_LAMBDA_IN, (120, 510, 233, 194, 101, 741, 9, 3, 6, 31), strict=True))
LAMBDA_8B_FP8 = tuple(zip(_LAMBDA_IN, (120, 1, 1, 194, 1, 40, 1, 1, 6, 80), strict=True))
LLAMA_70B = find_model("meta-llama/Llama-3.1-70B-Instruct")


def _lambda(gpu: str, metric: str, published: float, tolerance: float) -> Measurement:
    sizes = LAMBDA_H100 if gpu == "h100" else LAMBDA_A100
    return Measurement(LAMBDA, GPUS[gpu], LLAMA3_8B, 1, 1, metric, published, tolerance,
                       sizes=sizes)  # fmt: skip


def _lambda_h100(
    model: ModelSpec, sizes: tuple[tuple[int, int], ...], count: int, precision: str,
    metric: str, published: float,
) -> Measurement:  # fmt: skip
    tolerance = 0.10 if metric == "tpot_ms" else 0.20
    return Measurement(LAMBDA, GPUS["h100"], model, 1, 1, metric, published, tolerance,
                       sizes=sizes, gpu_count=count, precision=precision)  # fmt: skip


MEASUREMENTS: tuple[Measurement, ...] = (
    Measurement(VLLM, GPUS["h100"], LLAMA3_8B, 512, 256, "tpot_ms", 7.56, 0.10),
    Measurement(VLLM, GPUS["a100"], LLAMA3_8B, 512, 256, "tpot_ms", 12.01, 0.10),
    # The same figures are the median TPOT of this run, whose TTFT is published too.
    _lambda("h100", "tpot_ms", 7.558, 0.10),
    _lambda("a100", "tpot_ms", 12.014, 0.10),
    _lambda("h100", "ttft_ms", 62.19, 0.20),
    _lambda("a100", "ttft_ms", 126.73, 0.20),
    _lambda_h100(LLAMA_70B, LAMBDA_70B_TP2, 2, "bf16", "tpot_ms", 29.54),
    _lambda_h100(LLAMA_70B, LAMBDA_70B_TP2, 2, "bf16", "ttft_ms", 218.92),
    _lambda_h100(LLAMA3_8B, LAMBDA_8B_TP2, 2, "bf16", "tpot_ms", 5.257),
    _lambda_h100(LLAMA3_8B, LAMBDA_8B_FP8, 1, "fp8", "tpot_ms", 5.198),
    _lambda_h100(LLAMA3_8B, LAMBDA_8B_FP8, 1, "fp8", "ttft_ms", 62.48),
    # Newer vLLM: InferenceBench's H100-80GB-HBM3 sweep, Llama-3.1-8B FP16, concurrency
    # 1 (chat-short prompts; 256 in / 256 out assumed), TPOT p50 6.48 ms; and a vLLM 0.23
    # sweep on an A100 40GB, 1024 in / 128 out, "about 75 tokens/sec" at concurrency 1.
    Measurement(VLLM_NEW, GPUS["h100"], LLAMA3_8B, 256, 256, "tpot_ms", 6.48, 0.10),
    Measurement(VLLM_NEW, A100_40GB, LLAMA3_8B, 1024, 128, "tpot_ms", 1e3 / 75, 0.10),
    # 1000 / tokens per second; the run generates 512 tokens after a near-empty prompt.
    Measurement(LLAMA_CPP, GPUS["rtx4090"], LLAMA3_8B, 16, 512, "tpot_ms", 1e3 / 54.84, 0.10),
    Measurement(LLAMA_CPP, GPUS["rtx4090"], LLAMA2_7B, 16, 512, "tpot_ms", 1e3 / 60.78, 0.10),
    Measurement(LLAMA_CPP, GPUS["a6000"], LLAMA2_7B, 16, 512, "tpot_ms", 1e3 / 44.01, 0.10),
    Measurement(DATABRICKS, A100_40GB, MPT_7B, 512, 1, "ttft_ms", 46.0, 0.20),
    Measurement(TRTLLM, GPUS["a100"], LLAMA2_7B, 128, 1, "mfu", 0.35, 0.20),
    Measurement(TRTLLM, GPUS["a100"], LLAMA2_7B, 2048, 1, "mfu", 0.70, 0.20),
    _mbu("h100", 0.60, 0.75),
    _mbu("a100", 0.60, 0.75),
    _mbu("rtx4090", 0.75, 0.87),
    _mbu("a6000", 0.75, 0.87),
)


def table() -> str:
    """The Markdown table of CALIBRATION.md."""
    rows = [
        "| source | setting | metric | published | sim | error | tolerance |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for measurement in MEASUREMENTS:
        simulated = measurement.simulate()
        if measurement.high:
            published = f"{measurement.low:.2f}-{measurement.high:.2f}"
            error = "in range" if measurement.within(simulated) else "OUT OF RANGE"
            tolerance = "range"
        else:
            published = f"{measurement.published:.4g}"
            error = f"{100 * measurement.error(simulated):+.1f} %"
            tolerance = f"±{100 * measurement.tolerance:.0f} %"
        rows.append(
            f"| {measurement.source} | {measurement.setting} | {measurement.metric} "
            f"| {published} | {simulated:.3g} | {error} | {tolerance} |"
        )
    return "\n".join(rows) + "\n"
