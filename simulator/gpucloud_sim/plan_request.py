"""What the capacity planner is asked: model workloads, SLOs, prices and the fleets allowed."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from gpucloud_sim.cost import PRECISIONS
from gpucloud_sim.gpus import GPUS, find_gpu
from gpucloud_sim.models import find_model
from gpucloud_sim.results import Summary

# What a fleet fails on: an SLO, or the model not fitting the GPUs at all.
BreaksOn = Literal["ttft_p99", "tpot_p99", "memory", "precision"]

# $ per GPU-hour, on demand. ILLUSTRATIVE figures in the range of 2024 list prices of
# GPU clouds (Lambda Cloud listed H100 SXM at $2.99, A100 SXM 80GB at $1.79 and RTX
# A6000 at $0.80; RunPod listed the RTX 4090 at about $0.69); prices change often and
# differ by provider and commitment, so pass your own (`--price h100=2.49`).
DEFAULT_PRICES: Mapping[str, float] = MappingProxyType(
    {"h100": 2.99, "a100": 1.79, "a6000": 0.80, "rtx4090": 0.69}
)
# Tensor-parallel degrees tried per worker.
DEFAULT_GPU_COUNTS = (1, 2, 4, 8)
# Bounds that keep one plan() call to a few CPU seconds: requests simulated per run
# (p99 over 400 requests is the 5th largest), fewer when answers are long (at most
# TOKENS_PER_RUN output tokens a run, MIN_REQUESTS whatever it takes); per call, fleet
# runs, simulated output tokens (~1 us of CPU each in large batches) and engine steps
# (~8 us each at batch 1, ~65 us at batch 64; a run is never cut short, so a call may
# exceed MAX_STEPS by one run's steps, at most TOKENS_PER_RUN plus its requests).
DEFAULT_REQUESTS = 400
MAX_REQUESTS = 2000
MIN_REQUESTS = 50
TOKENS_PER_RUN = 100_000
MAX_RUNS = 80
MAX_TOKENS = 2_000_000
MAX_STEPS = 400_000
MAX_GPUS_LIMIT = 1024


@dataclass(frozen=True, slots=True)
class Lengths:
    """Token counts of one part of a request: `mean`, spread lognormally with
    coefficient of variation `cv` (0: every request has exactly `mean`)."""

    mean: int
    cv: float = 0.0

    def __post_init__(self) -> None:
        if self.mean < 1 or not 0.0 <= self.cv <= 4.0:
            raise ValueError(f"token lengths need mean >= 1 and 0 <= cv <= 4 ({self})")

    def sample(self, rng: random.Random) -> int:
        if self.cv == 0:
            return self.mean
        sigma2 = math.log1p(self.cv * self.cv)
        mu = math.log(self.mean) - sigma2 / 2
        return max(1, round(rng.lognormvariate(mu, math.sqrt(sigma2))))


@dataclass(frozen=True, slots=True)
class ModelWorkload:
    """One model's traffic: Poisson arrivals at `rate_per_s`, request sizes drawn from
    the two distributions, or replayed from `sizes` ((prompt, output) pairs, e.g. a
    recorded trace) when given."""

    model: str
    rate_per_s: float
    prompt_tokens: Lengths = Lengths(512)
    output_tokens: Lengths = Lengths(128)
    sizes: tuple[tuple[int, int], ...] = ()

    def __post_init__(self) -> None:
        # The catalog id, however it was named (ValueError lists the known models).
        object.__setattr__(self, "model", find_model(self.model).id)
        if not (math.isfinite(self.rate_per_s) and self.rate_per_s > 0):
            raise ValueError(f"{self.model}: the arrival rate must be > 0 requests/s")
        if any(p < 1 or o < 1 for p, o in self.sizes):
            raise ValueError(f"{self.model}: recorded sizes must be >= 1 token each")

    def mean_tokens(self) -> tuple[float, float]:
        """Mean prompt and output tokens: of the recorded sizes, else the distributions'."""
        if not self.sizes:
            return float(self.prompt_tokens.mean), float(self.output_tokens.mean)
        count = len(self.sizes)
        return sum(p for p, _ in self.sizes) / count, sum(o for _, o in self.sizes) / count

    def draw(self, count: int, seed: int) -> tuple[tuple[int, int], ...]:
        """Up to `count` request sizes (fewer if they would exceed TOKENS_PER_RUN output
        tokens), the same for the same seed: every fleet of a plan sees the same
        requests, so their latencies compare."""
        rng = random.Random(f"{seed}:{self.model}")
        drawn: list[tuple[int, int]] = []
        tokens = 0
        while len(drawn) < count and (len(drawn) < MIN_REQUESTS or tokens < TOKENS_PER_RUN):
            if self.sizes:
                size = rng.choice(self.sizes)
            else:
                size = (self.prompt_tokens.sample(rng), self.output_tokens.sample(rng))
            drawn.append(size)
            tokens += size[1]
        return tuple(drawn)


@dataclass(frozen=True, slots=True)
class Slo:
    """The latency objectives, in milliseconds of p99."""

    ttft_p99_ms: float = 500.0
    tpot_p99_ms: float = 50.0

    def __post_init__(self) -> None:
        if not (self.ttft_p99_ms > 0 and self.tpot_p99_ms > 0):
            raise ValueError("SLOs must be > 0 ms")

    def misses(self, summary: Summary) -> BreaksOn | None:
        """The objective a run misses (the one missed by most, relatively), or None."""
        ratios: dict[BreaksOn, float] = {
            "ttft_p99": summary.ttft_ms_p99 / self.ttft_p99_ms,
            # A run of one-token answers has no TPOT (NaN): nothing to miss.
            "tpot_p99": _or_zero(summary.tpot_ms_p99) / self.tpot_p99_ms,
        }
        worst = max(ratios, key=lambda key: ratios[key])
        return worst if ratios[worst] > 1.0 else None


def _or_zero(value: float) -> float:
    return 0.0 if math.isnan(value) else value


@dataclass(frozen=True, slots=True)
class PlanRequest:
    """What to plan for: one pool of workers per model, costs added up.

    `gpus` are the catalog kinds allowed (empty: every kind with a price), each with
    `gpu_counts` GPUs per worker (tensor parallel); a pool holds at most `max_gpus`.
    `requests` are simulated per run; `seed` fixes arrivals and sizes.
    """

    workloads: tuple[ModelWorkload, ...]
    slo: Slo = Slo()
    prices: Mapping[str, float] = field(default_factory=lambda: DEFAULT_PRICES)
    gpus: tuple[str, ...] = ()
    gpu_counts: tuple[int, ...] = DEFAULT_GPU_COUNTS
    precision: str = "bf16"
    max_gpus: int = 64
    requests: int = DEFAULT_REQUESTS
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.workloads:
            raise ValueError("plan needs at least one model workload")
        models = [find_model(w.model).id for w in self.workloads]
        if len(set(models)) != len(models):
            raise ValueError("each model may appear in one workload only")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; use bf16 or fp8")
        if not self.gpu_counts or min(self.gpu_counts) < 1:
            raise ValueError("GPU counts per worker must be >= 1")
        if not 1 <= self.max_gpus <= MAX_GPUS_LIMIT:
            raise ValueError(f"max GPUs must be between 1 and {MAX_GPUS_LIMIT}")
        if min(self.gpu_counts) > self.max_gpus:
            raise ValueError("every GPU count per worker is above the max GPUs of a pool")
        if not MIN_REQUESTS <= self.requests <= MAX_REQUESTS:
            raise ValueError(f"requests per run must be between {MIN_REQUESTS} and {MAX_REQUESTS}")
        for key in self.kinds():
            price = self.prices.get(key)
            if price is None or not (math.isfinite(price) and price >= 0):
                raise ValueError(f"no valid $/GPU-hour price for {key!r}; give --price {key}=X")

    def kinds(self) -> tuple[str, ...]:
        """The GPU kinds to try, as catalog keys."""
        if not self.gpus:
            return tuple(key for key in GPUS if key in self.prices)
        return tuple(dict.fromkeys(find_gpu(name).key for name in self.gpus))
