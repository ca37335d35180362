"""The planner's search: per GPU kind and GPU count, the fewest workers that meet the SLOs."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from gpucloud_sim import cost, memory
from gpucloud_sim.engine import GpuEngine
from gpucloud_sim.gpus import GPUS, GpuModel
from gpucloud_sim.models import ModelSpec, find_model
from gpucloud_sim.plan_request import BreaksOn, ModelWorkload, PlanRequest
from gpucloud_sim.plan_result import FleetOutcome, PoolPlan
from gpucloud_sim.profile import profile
from gpucloud_sim.results import Summary

# Requests run one at a time to find a candidate's latency floor: what a lone request
# gets, which no number of workers improves.
FLOOR_REQUESTS = 20
# A fleet that misses an objective, doubled, which improves that objective by less
# than this share, is at the floor a bigger fleet cannot lower (one request alone
# decodes no faster): the search stops there.
PLATEAU = 0.05
# The closed-form worker estimate (Candidate.estimated_workers) is meant to be low;
# as it is only a model, a candidate is ruled out by cost only when this share of
# its estimate would already cost more than the best fleet found.
ESTIMATE_MARGIN = 0.8
# Rate multiples tried for the chosen fleet's headroom (then bisected twice).
HEADROOM_STEPS = (1.25, 1.5, 2.0, 3.0, 4.0)
HEADROOM_BISECTIONS = 2


@dataclass(slots=True)
class Budget:
    """What part of one plan() call may simulate: fleet runs, output tokens and engine
    steps (its CPU time is about proportional to the last two); `truncated` once a
    run was refused."""

    runs: int
    tokens: int
    steps: int
    used_runs: int = 0
    used_tokens: int = 0
    used_steps: int = 0
    truncated: bool = False

    def share(self, parts: int) -> Budget:
        """An even share of what is left, for one of `parts` pools."""
        return Budget(
            (self.runs - self.used_runs) // parts,
            (self.tokens - self.used_tokens) // parts,
            (self.steps - self.used_steps) // parts,
        )

    def spend(self, part: Budget) -> None:
        self.used_runs += part.used_runs
        self.used_tokens += part.used_tokens
        self.used_steps += part.used_steps
        self.truncated = self.truncated or part.truncated

    def take(self, tokens: int) -> bool:
        """Whether a run of `tokens` output tokens may start (then it is counted)."""
        full = self.used_runs >= self.runs or self.used_steps >= self.steps
        if full or self.used_tokens + tokens > self.tokens:
            self.truncated = True
            return False
        self.used_runs += 1
        self.used_tokens += tokens
        return True


class OutOfRuns(Exception):
    """The budget ran out in the middle of a candidate's search."""


@dataclass(slots=True)
class Candidate:
    """One GPU kind at one GPU count per worker, and the fleets of it simulated so far."""

    pool: Pool
    gpu: GpuModel
    gpu_count: int
    price: float
    # Requests one worker's KV cache holds at once (of the workload's mean size).
    in_flight: int
    runs: dict[int, FleetOutcome] = field(default_factory=dict)
    # Workers the rate needs by the closed-form estimate (a fraction: not rounded up).
    estimate: float = 1.0

    @property
    def start(self) -> int:
        """The worker count the search starts from: the estimate, rounded up."""
        return max(1, math.ceil(self.estimate))

    @property
    def worker_price(self) -> float:
        return self.price * self.gpu_count

    def outcome(self, workers: int, scale: float = 1.0) -> FleetOutcome:
        """The fleet of `workers` workers at `scale` times the rate (runs memoised at 1)."""
        if scale == 1.0 and workers in self.runs:
            return self.runs[workers]
        rate = self.pool.workload.rate_per_s * scale
        return self._outcome(workers, self.pool.simulate(self, workers, rate=rate), scale)

    def floor(self, why: BreaksOn) -> FleetOutcome:
        """One worker serving one request at a time (the best any fleet of this kind
        does), with the summary of a short run when the budget allows."""
        try:
            summary = self.pool.simulate(self, 1, requests=FLOOR_REQUESTS)
        except OutOfRuns:
            ruled_out = self.pool.ruled_out(self.gpu, self.gpu_count, why)
            return dataclasses.replace(ruled_out, workers=1, cost_per_hour=self.worker_price)
        return self._outcome(1, summary, 0.0)

    def _outcome(self, workers: int, summary: Summary, scale: float) -> FleetOutcome:
        breaks = self.pool.request.slo.misses(summary)
        result = FleetOutcome(
            self.pool.model.id, self.gpu.key, self.gpu_count, workers,
            self.pool.request.precision, self.worker_price * workers, summary,
            meets_slo=breaks is None, breaks_on=breaks,
        )  # fmt: skip
        if scale == 1.0:
            self.runs[workers] = result
        return result

    def estimated_workers(self) -> float:
        """A first guess, on the low side, at the workers the rate needs.

        Closed form from the step cost: the largest decode batch whose step meets the
        TPOT objective, each request costing its prefill plus its share of the decode
        steps of the mean answer. No prefill/decode interference and no queueing, so
        the guess is optimistic and the search grows from it.
        """
        deployment = self.deployment()
        prompt, output = self.pool.mean_size()
        context = int(prompt + output / 2)
        slo_s = self.pool.request.slo.tpot_p99_ms / 1e3
        low, high = 1, max(1, self.in_flight)
        while low < high:  # the largest batch whose decode step is within the SLO
            middle = (low + high + 1) // 2
            fast = cost.decode_seconds(deployment, middle, context) <= slo_s
            low, high = (middle, high) if fast else (low, middle - 1)
        # Prefill compute only: the engine charges its fixed overhead once per step,
        # and prompts admitted together share it.
        per_request = _prefill(deployment, int(prompt)).compute_s
        per_request += output * cost.decode_seconds(deployment, low, context) / low
        return self.pool.workload.rate_per_s * per_request

    def hopeless(self) -> BreaksOn | None:
        """The objective a lone request of the median size already misses: then no
        fleet of this kind meets the SLOs (more workers make no request faster)."""
        deployment = self.deployment()
        prompt, output = self.pool.median_size()
        slo = self.pool.request.slo
        if _prefill(deployment, prompt).seconds * 1e3 > slo.ttft_p99_ms:
            return "ttft_p99"
        tpot_s = cost.decode_seconds(deployment, 1, prompt) if output > 1 else 0.0
        return "tpot_p99" if tpot_s * 1e3 > slo.tpot_p99_ms else None

    def deployment(self) -> cost.Deployment:
        return cost.Deployment(
            self.pool.model, self.gpu, self.gpu_count, self.pool.request.precision
        )

    def fewest_workers(self, start: int, limit: int) -> tuple[FleetOutcome, FleetOutcome | None]:
        """The smallest fleet meeting the SLOs and the one a worker smaller (None when
        it is one worker), or the largest fleet tried when none up to `limit` meets."""
        low, high = 0, None  # the most workers that missed, the fewest that met
        workers = min(max(1, start), limit)
        while high is None:
            outcome = self.outcome(workers)
            if outcome.meets_slo:
                high = workers
            elif workers >= limit or (low and _plateau(self.runs[low], outcome)):
                return outcome, None
            else:
                low, workers = workers, min(limit, 2 * workers)
        if low == 0 and high > 1:  # the estimate met: is one worker fewer enough too?
            if self.outcome(high - 1).meets_slo:
                high -= 1
            else:
                low = high - 1
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (low, middle) if self.outcome(middle).meets_slo else (middle, high)
        return self.runs[high], self.runs.get(low)


@dataclass(slots=True)
class Pool:
    """One model's workload and the fleets tried for it."""

    request: PlanRequest
    workload: ModelWorkload
    model: ModelSpec
    sizes: tuple[tuple[int, int], ...]
    budget: Budget

    def simulate(
        self,
        candidate: Candidate,
        workers: int,
        *,
        rate: float | None = None,
        concurrency: int | None = None,
        requests: int | None = None,
    ) -> Summary:
        """One run of the pool's requests (the first `requests` of them): Poisson
        arrivals at `rate`, else a closed loop of `concurrency` (default 1) in flight."""
        sizes = self.sizes[:requests]
        if not self.budget.take(sum(output for _, output in sizes)):
            raise OutOfRuns
        first = sizes[0]
        run = profile(
            candidate.gpu, self.model, first[0], first[1], concurrency, len(sizes), rate,
            candidate.gpu_count, self.request.precision, self.request.seed,
            workers=workers, sizes=sizes,
        )  # fmt: skip
        self.budget.used_steps += run.steps
        return run.summary

    def mean_size(self) -> tuple[float, float]:
        count = len(self.sizes)
        return sum(p for p, _ in self.sizes) / count, sum(o for _, o in self.sizes) / count

    def median_size(self) -> tuple[int, int]:
        middle = len(self.sizes) // 2
        prompts, outputs = sorted(p for p, _ in self.sizes), sorted(o for _, o in self.sizes)
        return prompts[middle], outputs[middle]

    def in_flight(self, gpu: GpuModel, gpu_count: int) -> int:
        """Requests of the mean size one worker holds at once; 0 when the weights plus
        a few KV slots, or the longest request, do not fit."""
        precision = self.request.precision
        if not memory.fits([self.model], gpu, gpu_count, precision):
            return 0
        engine = GpuEngine(gpu, [self.model], gpu_count=gpu_count, precision=precision)
        if engine.context_limit(self.model) < max(p + o for p, o in self.sizes):
            return 0
        mean = sum(p + o for p, o in self.sizes) / len(self.sizes)
        held = int(engine.kv_bytes / self.model.kv_bytes_per_token / mean)
        return max(1, min(engine.config.max_num_seqs, held))

    def ruled_out(self, gpu: GpuModel, gpu_count: int, why: BreaksOn) -> FleetOutcome:
        return FleetOutcome(
            self.model.id, gpu.key, gpu_count, 0, self.request.precision, 0.0, None,
            meets_slo=False, breaks_on=why,
        )  # fmt: skip


def plan_pool(request: PlanRequest, workload: ModelWorkload, budget: Budget) -> PoolPlan:
    """The cheapest fleet for one model's workload, with the one just too small."""
    model = find_model(workload.model)
    sizes = tuple(
        _within(size, model.max_context) for size in workload.draw(request.requests, request.seed)
    )
    pool = Pool(request, workload, model, sizes, budget)
    candidates, outcomes = _candidates(pool)
    best: tuple[Candidate, FleetOutcome, FleetOutcome | None] | None = None
    for candidate in list(candidates):
        why = candidate.hopeless()
        floor = None if why is None else candidate.floor(why)
        if floor is not None and not floor.meets_slo:  # no fleet of it can meet
            candidates.remove(candidate)
            outcomes.append(floor)
        else:
            candidate.estimate = candidate.estimated_workers()
    by_cost = sorted(candidates, key=lambda c: (c.worker_price * c.estimate, c.gpu_count))
    skipped: list[tuple[str, int, int]] = []
    for candidate in by_cost:
        limit = _worker_limit(request, candidate, best[1].cost_per_hour if best else None)
        if max(1, math.ceil(candidate.estimate * ESTIMATE_MARGIN)) > limit:
            # Even the optimistic estimate costs more than the best (or max_gpus).
            skipped.append((candidate.gpu.key, candidate.gpu_count, candidate.start))
            continue
        try:
            found, below = candidate.fewest_workers(candidate.start, limit)
        except OutOfRuns:
            break
        outcomes.append(found)
        if found.meets_slo and (best is None or found.cost_per_hour < best[1].cost_per_hour):
            best = (candidate, found, below)
    if best is None:
        return PoolPlan(workload, None, None, _ranked(outcomes), tuple(skipped))
    candidate, found, below = best
    chosen = _with_headroom(candidate, found)
    outcomes[outcomes.index(found)] = chosen
    smaller = below if below is not None else _one_gpu_smaller(candidates, candidate)
    return PoolPlan(workload, chosen, smaller, _ranked(outcomes), tuple(skipped))


def _candidates(pool: Pool) -> tuple[list[Candidate], list[FleetOutcome]]:
    """Every kind and GPU count that holds the model, and a row per kind that does not."""
    request = pool.request
    counts = sorted({c for c in request.gpu_counts if c <= request.max_gpus})
    candidates: list[Candidate] = []
    ruled_out: list[FleetOutcome] = []
    for key in request.kinds():
        gpu = GPUS[key]
        if request.precision == "fp8" and gpu.dense_fp8_flops is None:
            ruled_out.append(pool.ruled_out(gpu, counts[0], "precision"))
            continue
        held = {count: pool.in_flight(gpu, count) for count in counts}
        if not any(held.values()):
            ruled_out.append(pool.ruled_out(gpu, counts[-1], "memory"))
        candidates += [
            Candidate(pool, gpu, count, request.prices[key], held[count])
            for count in counts
            if held[count]
        ]
    return candidates, ruled_out


def _worker_limit(request: PlanRequest, candidate: Candidate, best_cost: float | None) -> int:
    """Most workers worth trying: within max_gpus and, once a fleet meets the SLOs,
    fewer than would cost as much as it."""
    limit = request.max_gpus // candidate.gpu_count
    if best_cost is not None and candidate.worker_price > 0:
        limit = min(limit, math.ceil(best_cost / candidate.worker_price) - 1)
    return limit


def _with_headroom(candidate: Candidate, chosen: FleetOutcome) -> FleetOutcome:
    """The chosen fleet with the largest rate multiple it meets the SLOs at (tried up
    to HEADROOM_STEPS[-1]) and the objective it misses first beyond that."""
    met, missed = 1.0, None
    try:
        for scale in HEADROOM_STEPS:
            outcome = candidate.outcome(chosen.workers, scale)
            if not outcome.meets_slo:
                missed = (scale, outcome.breaks_on)
                break
            met = scale
        for _ in range(HEADROOM_BISECTIONS if missed else 0):
            assert missed is not None
            middle = round((met + missed[0]) / 2, 3)
            outcome = candidate.outcome(chosen.workers, middle)
            if outcome.meets_slo:
                met = middle
            else:
                missed = (middle, outcome.breaks_on)
    except OutOfRuns:
        pass
    breaks = missed[1] if missed else None
    return dataclasses.replace(chosen, headroom=met, breaks_on=breaks)


def _one_gpu_smaller(candidates: list[Candidate], chosen: Candidate) -> FleetOutcome | None:
    """One worker of the next smaller GPU count of the same kind, for a one-worker fleet."""
    smaller = [c for c in candidates if c.gpu is chosen.gpu and c.gpu_count < chosen.gpu_count]
    if not smaller:
        return None
    try:
        return max(smaller, key=lambda c: c.gpu_count).outcome(1)
    except OutOfRuns:
        return None


def _within(size: tuple[int, int], context: int) -> tuple[int, int]:
    """A drawn size cut to the model's context, prompt first (as clients truncate
    history): a longer request would be refused, not served."""
    prompt, output = size
    output = min(output, context - 1)
    return min(prompt, context - output), output


def _prefill(deployment: cost.Deployment, prompt: int) -> cost.StepCost:
    """A lone prompt's prefill: one step over all its tokens (chunking aside)."""
    work = cost.StepWork()
    work.add_prefill(prompt, 0, first=True)
    return cost.step_cost(deployment, work)


def _plateau(before: FleetOutcome, after: FleetOutcome) -> bool:
    """Whether the objective `after` misses barely improved on `before` (a smaller fleet)."""
    assert before.summary is not None
    assert after.summary is not None
    metric = {"ttft_p99": "ttft_ms_p99", "tpot_p99": "tpot_ms_p99"}.get(after.breaks_on or "")
    if metric is None:
        return False
    was, now = getattr(before.summary, metric), getattr(after.summary, metric)
    return bool(now > was * (1.0 - PLATEAU))


def _ranked(outcomes: list[FleetOutcome]) -> tuple[FleetOutcome, ...]:
    """Fleets that meet the SLOs, cheapest first, then the rest."""
    return tuple(sorted(outcomes, key=lambda o: (not o.meets_slo, o.workers == 0, o.cost_per_hour)))
