"""`gpucloud sim profile` as a library: one worker's latencies on the virtual clock."""

from __future__ import annotations

from gpucloud_sim.engine import GpuEngine
from gpucloud_sim.fleet import Workload, simulate_fleet
from gpucloud_sim.gpus import GpuModel, find_gpu
from gpucloud_sim.models import ModelSpec, find_model
from gpucloud_sim.results import ProfileResult
from gpucloud_sim.sched import EngineConfig


def profile(
    gpu: str | GpuModel,
    model: str | ModelSpec,
    prompt_tokens: int,
    output_tokens: int,
    concurrency: int | None = None,
    requests: int = 100,
    rate: float | None = None,
    gpu_count: int = 1,
    precision: str = "bf16",
    seed: int = 0,
    *,
    workers: int = 1,
    shared_prefix_tokens: int = 0,
    sizes: tuple[tuple[int, int], ...] = (),
    config: EngineConfig | None = None,
) -> ProfileResult:
    """Simulates `requests` identical requests on `workers` workers of `gpu_count` GPUs.

    Closed loop with `concurrency` requests in flight, or open loop with Poisson
    arrivals at `rate` per second (seeded); neither means one request at a time.
    `sizes` replays recorded (prompt, output) sizes instead of the two fixed ones.
    Runs on a virtual clock: seconds of GPU time cost milliseconds of CPU.
    ValueError for an unknown GPU or model, FP8 on a GPU without it, or a model
    that does not fit.
    """
    card = find_gpu(gpu) if isinstance(gpu, str) else gpu
    spec = find_model(model) if isinstance(model, str) else model
    workload = Workload(
        prompt_tokens, output_tokens, requests, concurrency, rate,
        shared_prefix_tokens=shared_prefix_tokens, seed=seed, sizes=sizes,
    )  # fmt: skip
    engines = [
        GpuEngine(card, [spec], gpu_count=gpu_count, precision=precision, config=config)
        for _ in range(workers)
    ]
    _check_fits(engines[0], spec, workload)
    return simulate_fleet(engines, spec, workload)


def _check_fits(engine: GpuEngine, model: ModelSpec, workload: Workload) -> None:
    """ValueError unless every request of the workload fits the worker's context."""
    limit = engine.context_limit(model)
    longest = max(sum(workload.size(i)) for i in range(len(workload.sizes) or 1))
    if longest > limit:
        where = f"{engine.gpu_count} x {engine.gpu.name}"
        raise ValueError(
            f"{model.id} on {where} holds {limit} tokens per sequence (its context or its "
            f"KV cache after the weights); the workload needs {longest}"
        )
