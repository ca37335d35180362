"""What a profile run measures: per-request latencies and their summary."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from gpucloud_sim import sched


@dataclass(frozen=True, slots=True)
class RequestResult:
    """One request's latencies in milliseconds of simulated time."""

    arrival_s: float
    ttft_ms: float
    # Mean time per output token after the first.
    tpot_ms: float
    e2e_ms: float
    output_tokens: int
    cached_tokens: int
    preemptions: int
    worker: int

    @classmethod
    def of(cls, seq: sched.Seq, worker: int) -> RequestResult:
        first = seq.first_token_s if seq.first_token_s is not None else seq.last_token_s
        between = (seq.last_token_s - first) / (seq.generated - 1) if seq.generated > 1 else 0.0
        return cls(
            arrival_s=seq.arrival_s,
            ttft_ms=1e3 * (first - seq.arrival_s),
            tpot_ms=1e3 * between,
            e2e_ms=1e3 * (seq.last_token_s - seq.arrival_s),
            output_tokens=seq.generated,
            cached_tokens=seq.cached_tokens,
            preemptions=seq.preemptions,
            worker=worker,
        )


@dataclass(frozen=True, slots=True)
class Summary:
    """Percentiles and throughput of a run (the `gpucloud sim profile` table)."""

    ttft_ms_p50: float
    ttft_ms_p99: float
    tpot_ms_p50: float
    tpot_ms_p99: float
    e2e_ms_p50: float
    output_tokens_per_s: float
    requests_per_s: float

    @classmethod
    def of(cls, requests: Sequence[RequestResult], seconds: float) -> Summary:
        ttft = [r.ttft_ms for r in requests]
        # As vLLM's benchmark: a one-token answer has no time per output token.
        tpot = [r.tpot_ms for r in requests if r.output_tokens > 1]
        e2e = [r.e2e_ms for r in requests]
        rate = 1.0 / seconds if seconds > 0 else 0.0
        return cls(
            ttft_ms_p50=percentile(ttft, 50),
            ttft_ms_p99=percentile(ttft, 99),
            tpot_ms_p50=percentile(tpot, 50),
            tpot_ms_p99=percentile(tpot, 99),
            e2e_ms_p50=percentile(e2e, 50),
            output_tokens_per_s=sum(r.output_tokens for r in requests) * rate,
            requests_per_s=len(requests) * rate,
        )


@dataclass(frozen=True, slots=True)
class ProfileResult:
    """A run: its summary, every request in arrival order and the simulated span."""

    summary: Summary
    requests: tuple[RequestResult, ...]
    # Simulated seconds from the first arrival to the last token.
    simulated_s: float
    steps: int
    preemptions: int


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile, interpolated between closest ranks (numpy's default)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
