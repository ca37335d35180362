"""A fleet of engines on one virtual clock, fed by a closed- or open-loop workload."""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from gpucloud_sim.engine import GpuEngine
from gpucloud_sim.kv import BLOCK_TOKENS
from gpucloud_sim.models import ModelSpec
from gpucloud_sim.results import ProfileResult, RequestResult, Summary
from gpucloud_sim.sched import Seq


@dataclass(frozen=True, slots=True)
class Workload:
    """Identical requests: `concurrency` in flight (closed loop) or Poisson arrivals at
    `rate` per second (open loop, seeded). Neither: one at a time."""

    prompt_tokens: int
    output_tokens: int
    requests: int = 100
    concurrency: int | None = None
    rate: float | None = None
    # Leading prompt tokens every request shares (a system prompt): prefix cache hits.
    shared_prefix_tokens: int = 0
    seed: int = 0
    # (prompt, output) tokens per request, cycled, instead of the two sizes above: a
    # recorded benchmark's requests replayed.
    sizes: tuple[tuple[int, int], ...] = ()

    def __post_init__(self) -> None:
        if self.concurrency is not None and self.rate is not None:
            raise ValueError("give concurrency (closed loop) or rate (open loop), not both")
        sizes = [(self.prompt_tokens, self.output_tokens), *self.sizes]
        if self.requests < 1 or min(min(pair) for pair in sizes) < 1:
            raise ValueError("requests, prompt_tokens and output_tokens must be >= 1")
        if (self.concurrency or 1) < 1 or (self.rate is not None and not self.rate > 0):
            raise ValueError("concurrency must be >= 1 and rate > 0")

    def size(self, request: int) -> tuple[int, int]:
        """(prompt, output) tokens of one request."""
        if self.sizes:
            return self.sizes[request % len(self.sizes)]
        return self.prompt_tokens, self.output_tokens

    def keys(self, request: int) -> tuple[Hashable, ...]:
        """Block keys of one request's prompt: the shared prefix, then its own blocks."""
        prompt = self.size(request)[0]
        shared = min(self.shared_prefix_tokens, prompt) // BLOCK_TOKENS
        own = prompt // BLOCK_TOKENS - shared
        return (*(("shared", j) for j in range(shared)), *((request, j) for j in range(own)))

    def first_arrivals(self) -> list[float]:
        """Arrival times known up front: all of them in an open loop."""
        if self.rate is None:
            return [0.0] * min(self.concurrency or 1, self.requests)
        rng = random.Random(self.seed)
        times, now = [], 0.0
        for _ in range(self.requests):
            times.append(now)
            now += rng.expovariate(self.rate)
        return times


def simulate_fleet(
    engines: Sequence[GpuEngine], model: ModelSpec, workload: Workload
) -> ProfileResult:
    """Runs `workload` on `engines`, each request sent to the least loaded engine.

    A discrete-event loop: the earliest event is either an arrival or the next step
    of a busy engine (a heap of busy engines by their `now`); nothing sleeps. Closed
    loop: each finished request sends the next one at its finish time.
    """
    arrivals = workload.first_arrivals()
    heapq.heapify(arrivals)
    busy: list[tuple[float, int]] = []  # (next step start, engine) of engines with work
    sent, steps = 0, 0
    done: list[RequestResult] = []
    worker_of: dict[Seq, int] = {}
    while arrivals or busy:
        if arrivals and (not busy or arrivals[0] <= busy[0][0]):
            seq, worker = _dispatch(engines, model, workload, sent, heapq.heappop(arrivals))
            if engines[worker].live_sequences == 1:  # it was idle: now it has work
                heapq.heappush(busy, (engines[worker].now, worker))
            worker_of[seq] = worker
            sent += 1
            continue
        _, worker = heapq.heappop(busy)
        engine = engines[worker]
        result = engine.step()
        steps += 1
        if engine.has_work():
            heapq.heappush(busy, (engine.now, worker))
        for seq in result.finished if result else ():
            done.append(RequestResult.of(seq, worker_of.pop(seq)))
            if workload.rate is None and sent + len(arrivals) < workload.requests:
                heapq.heappush(arrivals, engine.now)
    return _result(engines, done, steps)


def _dispatch(
    engines: Sequence[GpuEngine], model: ModelSpec, workload: Workload, request: int, at: float
) -> tuple[Seq, int]:
    worker = min(range(len(engines)), key=lambda i: engines[i].live_sequences)
    engine = engines[worker]
    if not engine.has_work():
        engine.advance_to(at)
    prompt, output = workload.size(request)
    (seq,) = engine.add(model, prompt, output, workload.keys(request), arrival_s=at)
    return seq, worker


def _result(engines: Sequence[GpuEngine], done: list[RequestResult], steps: int) -> ProfileResult:
    done.sort(key=lambda r: r.arrival_s)
    start = done[0].arrival_s if done else 0.0
    end = max((r.arrival_s + r.e2e_ms / 1e3 for r in done), default=start)
    span = end - start
    return ProfileResult(
        summary=Summary.of(done, span),
        requests=tuple(done),
        simulated_s=span if math.isfinite(span) else 0.0,
        steps=steps,
        preemptions=sum(engine.preemptions for engine in engines),
    )
