"""What the capacity planner answers: fleets, their simulated runs, headroom and costs."""

from __future__ import annotations

from dataclasses import dataclass

from gpucloud_sim.jsonable import summary_json
from gpucloud_sim.plan_request import BreaksOn, ModelWorkload, Slo
from gpucloud_sim.results import Summary


@dataclass(frozen=True, slots=True)
class FleetOutcome:
    """One fleet for one model: `workers` workers of `gpu_count` GPUs of kind `gpu`.

    `summary` is its simulated run at the workload's rate (None when the model does
    not fit: `breaks_on` "memory", or the GPU has no FP8: "precision"). For the chosen
    fleet, `headroom` is the largest multiple of the rate it still meets the SLOs at
    and `breaks_on` the objective it misses first beyond it; for a fleet that misses,
    `breaks_on` is the objective it misses.
    """

    model: str
    gpu: str
    gpu_count: int
    workers: int
    precision: str
    cost_per_hour: float
    summary: Summary | None
    meets_slo: bool
    breaks_on: BreaksOn | None = None
    headroom: float | None = None

    @property
    def gpus(self) -> int:
        return self.gpu_count * self.workers

    def to_json(self) -> dict[str, object]:
        return {
            "model": self.model,
            "gpu": self.gpu,
            "gpu_count": self.gpu_count,
            "workers": self.workers,
            "gpus": self.gpus,
            "precision": self.precision,
            "cost_per_hour": round(self.cost_per_hour, 4),
            "meets_slo": self.meets_slo,
            "breaks_on": self.breaks_on,
            "headroom": self.headroom,
            "summary": None if self.summary is None else summary_json(self.summary),
        }


@dataclass(frozen=True, slots=True)
class PoolPlan:
    """One model's pool: the cheapest fleet that meets the SLOs (None: none within
    max_gpus), the same kind one GPU or worker smaller (which misses them), and every
    fleet simulated or ruled out on the way (cheapest first)."""

    workload: ModelWorkload
    best: FleetOutcome | None
    smaller: FleetOutcome | None
    candidates: tuple[FleetOutcome, ...]
    # (gpu, gpu_count, estimated workers) of the candidates never simulated: even the
    # optimistic estimate of their fleet costs more than the best one.
    skipped: tuple[tuple[str, int, int], ...] = ()

    def to_json(self) -> dict[str, object]:
        w = self.workload
        prompt, output = w.mean_tokens()
        return {
            "model": w.model,
            "rate_per_s": round(w.rate_per_s, 6),
            "prompt_tokens": {"mean": round(prompt, 1), "cv": w.prompt_tokens.cv},
            "output_tokens": {"mean": round(output, 1), "cv": w.output_tokens.cv},
            "recorded_requests": len(w.sizes),
            "best": None if self.best is None else self.best.to_json(),
            "smaller": None if self.smaller is None else self.smaller.to_json(),
            "candidates": [c.to_json() for c in self.candidates],
            "skipped": [
                {"gpu": gpu, "gpu_count": count, "estimated_workers": workers}
                for gpu, count, workers in self.skipped
            ],
        }


@dataclass(frozen=True, slots=True)
class PlanResult:
    """A pool per model; `cost_per_hour` adds up their best fleets (None when a pool
    has none). `runs` is how many fleets were simulated; `truncated` says the run
    budget ran out before every candidate was tried."""

    pools: tuple[PoolPlan, ...]
    slo: Slo
    cost_per_hour: float | None
    runs: int
    truncated: bool

    @property
    def meets_slo(self) -> bool:
        return self.cost_per_hour is not None

    def to_json(self) -> dict[str, object]:
        return {
            "meets_slo": self.meets_slo,
            "cost_per_hour": None if self.cost_per_hour is None else round(self.cost_per_hour, 4),
            "slo": {"ttft_p99_ms": self.slo.ttft_p99_ms, "tpot_p99_ms": self.slo.tpot_p99_ms},
            "pools": [pool.to_json() for pool in self.pools],
            "runs": self.runs,
            "truncated": self.truncated,
        }
