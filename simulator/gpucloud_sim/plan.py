"""The capacity planner: a workload and SLOs in, the cheapest fleet that meets them out.

Pure and bounded: every fleet is simulated on the virtual clock with a fixed number of
requests (`PlanRequest.requests`) within a budget of runs, simulated tokens and engine
steps (MAX_RUNS, MAX_TOKENS, MAX_STEPS), so one call costs at most a few CPU seconds
and the same request always gives the same answer. `gpucloud plan` and the HTTP API both call
`plan()` and print `PlanResult.to_json()`; the API reads its body with
`plan_request_from_json()`.
"""

from __future__ import annotations

from gpucloud_sim.plan_json import plan_request_from_json
from gpucloud_sim.plan_request import (
    DEFAULT_GPU_COUNTS,
    DEFAULT_PRICES,
    MAX_RUNS,
    MAX_STEPS,
    MAX_TOKENS,
    BreaksOn,
    Lengths,
    ModelWorkload,
    PlanRequest,
    Slo,
)
from gpucloud_sim.plan_result import FleetOutcome, PlanResult, PoolPlan
from gpucloud_sim.plan_search import Budget, plan_pool

__all__ = [
    "DEFAULT_GPU_COUNTS",
    "DEFAULT_PRICES",
    "BreaksOn",
    "FleetOutcome",
    "Lengths",
    "ModelWorkload",
    "PlanRequest",
    "PlanResult",
    "PoolPlan",
    "Slo",
    "plan",
    "plan_request_from_json",
]


def plan(request: PlanRequest) -> PlanResult:
    """The cheapest fleet per model that meets `request.slo`, found on the virtual clock.

    Per model, every allowed GPU kind at every allowed GPU count per worker that holds
    the model (weights, KV slots and the longest request) is a candidate, tried in
    order of price per worker. For each, a saturated worker's throughput gives a first
    worker count, then doubling and bisection find the fewest workers that meet the
    SLOs; a candidate that cannot beat the best fleet found within `max_gpus` is not
    simulated further. The chosen fleet's headroom (the largest multiple of the rate
    it still meets) is searched last. Each model gets a pool of its own (no GPU is
    shared between models) and the pools' costs add up.
    """
    budget = Budget(MAX_RUNS, MAX_TOKENS, MAX_STEPS)
    pools: list[PoolPlan] = []
    for left, workload in zip(range(len(request.workloads), 0, -1), request.workloads, strict=True):
        # Each pool gets an even share of what the pools before it left over.
        share = budget.share(left)
        pools.append(plan_pool(request, workload, share))
        budget.spend(share)
    costs = [pool.best.cost_per_hour for pool in pools if pool.best is not None]
    total = sum(costs) if len(costs) == len(pools) else None
    return PlanResult(tuple(pools), request.slo, total, budget.used_runs, budget.truncated)
