"""A fleet of engines on one virtual clock, fed by a closed- or open-loop workload."""

from __future__ import annotations

import heapq
import math
import random
from collections import OrderedDict, deque
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Literal

from gpucloud_sim.engine import GpuEngine
from gpucloud_sim.kv import BLOCK_TOKENS
from gpucloud_sim.models import ModelSpec
from gpucloud_sim.results import ProfileResult, RequestResult, Summary
from gpucloud_sim.sched import Seq

Dispatch = Literal["least_loaded", "prefix"]
# The core's prefix-aware rule (gpucloud_server.scheduling.prefix), mirrored: block keys
# remembered per engine from what it was sent, the first PREFIX_BLOCKS of each prompt
# (the core hashes 64 blocks of 64 characters, about as many 16-token blocks), at most
# PREFIX_MEMORY per engine; the longest leading match wins among engines loaded at most
# PREFIX_LOAD_SLACK (a share of their slots) above the least loaded.
PREFIX_BLOCKS = 64
PREFIX_MEMORY = 16384
PREFIX_LOAD_SLACK = 0.25


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
    # Distinct shared prefixes (system prompts), each request using one drawn at random.
    prefix_groups: int = 1
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
        if self.prefix_groups < 1:
            raise ValueError("prefix_groups must be >= 1")

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
        group = 0
        if self.prefix_groups > 1:
            group = random.Random(f"{self.seed}:{request}").randrange(self.prefix_groups)
        leading = (("shared", group, j) for j in range(shared))
        return (*leading, *((request, j) for j in range(own)))

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
    engines: Sequence[GpuEngine],
    model: ModelSpec,
    workload: Workload,
    *,
    dispatch: Dispatch = "least_loaded",
    slots: int | None = None,
) -> ProfileResult:
    """Runs `workload` on `engines`, each request sent as `dispatch` says: to the least
    loaded engine, or prefix-aware as the core does. With `slots`, an engine takes at
    most that many requests (a worker's slots) and the rest wait in arrival order, as
    in the core's queue; without, every request goes to an engine at once.

    A discrete-event loop: the earliest event is either an arrival or the next step
    of a busy engine (a heap of busy engines by their `now`); nothing sleeps. Closed
    loop: each finished request sends the next one at its finish time.
    """
    fleet = _Fleet(engines, model, workload, dispatch, slots)
    arrivals = workload.first_arrivals()
    heapq.heapify(arrivals)
    while arrivals or fleet.busy:
        if arrivals and (not fleet.busy or arrivals[0] <= fleet.busy[0][0]):
            fleet.arrive(heapq.heappop(arrivals))
            continue
        now, finished = fleet.step()
        for _ in range(finished):
            fleet.free(now)
            if workload.rate is None and fleet.sent + len(arrivals) < workload.requests:
                heapq.heappush(arrivals, now)
    return _result(engines, fleet.done, fleet.steps)


class _Fleet:
    """The engines, their busy heap, the requests waiting for a slot, and the dispatcher."""

    def __init__(
        self,
        engines: Sequence[GpuEngine],
        model: ModelSpec,
        workload: Workload,
        dispatch: Dispatch,
        slots: int | None,
    ) -> None:
        self.engines, self.model, self.workload = engines, model, workload
        self.slots = [slots or engine.config.max_num_seqs for engine in engines]
        self.limited = slots is not None
        self.memory = [_PrefixMemory() for _ in engines] if dispatch == "prefix" else None
        self.busy: list[tuple[float, int]] = []  # (next step start, engine) with work
        self.waiting: deque[tuple[int, float]] = deque()  # (request, arrival)
        self.sent = self.steps = 0
        self.done: list[RequestResult] = []
        self.worker_of: dict[Seq, int] = {}

    def arrive(self, at: float) -> None:
        request, self.sent = self.sent, self.sent + 1
        worker = self._pick(self.workload.keys(request))
        if worker is None:
            self.waiting.append((request, at))
        else:
            self._send(request, at, worker)

    def free(self, now: float) -> None:
        """A request finished at `now`: the oldest waiting one takes its slot."""
        if self.waiting:
            request, at = self.waiting[0]
            worker = self._pick(self.workload.keys(request))
            if worker is not None:
                self.waiting.popleft()
                self._send(request, at, worker, now)

    def step(self) -> tuple[float, int]:
        """Steps the engine due first: (its time after the step, requests it finished)."""
        _, worker = heapq.heappop(self.busy)
        engine = self.engines[worker]
        result = engine.step()
        self.steps += 1
        if engine.has_work():
            heapq.heappush(self.busy, (engine.now, worker))
        finished = result.finished if result else []
        for seq in finished:
            self.done.append(RequestResult.of(seq, self.worker_of.pop(seq)))
        return engine.now, len(finished)

    def _load(self, worker: int) -> float:
        return self.engines[worker].live_sequences / self.slots[worker]

    def _pick(self, keys: tuple[Hashable, ...]) -> int | None:
        workers = range(len(self.engines))
        room = [i for i in workers if self.engines[i].live_sequences < self.slots[i]]
        if not room:
            return None if self.limited else min(workers, key=self._load)
        least = min(room, key=self._load)
        if self.memory is None:
            return least
        near = [i for i in room if self._load(i) <= self._load(least) + PREFIX_LOAD_SLACK]
        depth = {i: self.memory[i].matched(keys[:PREFIX_BLOCKS]) for i in near}
        deepest = max(depth.values())
        if deepest == 0:
            return least
        return min((i for i in near if depth[i] == deepest), key=self._load)

    def _send(self, request: int, at: float, worker: int, now: float | None = None) -> None:
        engine = self.engines[worker]
        if not engine.has_work():
            engine.advance_to(at if now is None else now)
        prompt, output = self.workload.size(request)
        keys = self.workload.keys(request)
        (seq,) = engine.add(self.model, prompt, output, keys, arrival_s=at)
        if self.memory is not None:
            self.memory[worker].remember(keys[:PREFIX_BLOCKS])
        if engine.live_sequences == 1:  # it was idle: now it has work
            heapq.heappush(self.busy, (engine.now, worker))
        self.worker_of[seq] = worker


class _PrefixMemory:
    """Block keys an engine was recently sent, leading blocks forgotten last."""

    def __init__(self, capacity: int = PREFIX_MEMORY) -> None:
        self._keys: OrderedDict[Hashable, None] = OrderedDict()
        self._capacity = capacity

    def remember(self, keys: Sequence[Hashable]) -> None:
        for key in reversed(keys):
            self._keys[key] = None
            self._keys.move_to_end(key)
        while len(self._keys) > self._capacity:
            self._keys.popitem(last=False)

    def matched(self, keys: Sequence[Hashable]) -> int:
        count = 0
        for key in keys:
            if key not in self._keys:
                break
            count += 1
        return count


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
