"""Simulator benchmark: how much simulated GPU time `gpucloud sim profile` gets per CPU
second, what one `gpucloud plan` costs, and the live fleet's CPU cost per 1,000 tokens.

    python bench/sim_bench.py [--requests 2000] [--generations 512] [--rounds 3]

1. `sim profile` speed: 64 concurrent streams (512 in / 128 out, closed loop) on one
   H100 running Meta-Llama-3-8B-Instruct, on the virtual clock. Simulated GPU-seconds
   (simulated seconds x GPUs) per CPU-second of this process; goal >= 100x.
2. `plan` cost: CPU seconds of a few typical plan() calls (each is bounded by runs
   and simulated tokens).
3. Live fleet: the worker's SimBackend at speed 0 (the engine timeline driven by the
   asyncio LiveDriver, as `gpucloud up --sim-speed 0` runs it) producing tokens for
   many concurrent generate() streams; CPU ms per 1,000 simulated tokens.

CPU time is process time (user + system) of this single-threaded process; each figure is
the best of --rounds. Output: bench/results/sim-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from procs import ROOT, machine

from gpucloud_sim import profile
from gpucloud_sim.plan import Lengths, ModelWorkload, PlanRequest, Slo, plan
from gpucloud_worker.backend import Chunk, GenerationRequest, Message
from gpucloud_worker.sim import SimBackend

LLAMA_8B = "meta-llama/Meta-Llama-3-8B-Instruct"
GOAL = 100.0


def best_of(rounds: int, work: Callable[[], Any]) -> tuple[float, Any]:
    """The smallest CPU time of `rounds` runs of `work`, and the last result."""
    best, result = float("inf"), None
    for _ in range(rounds):
        start = time.process_time()
        result = work()
        best = min(best, time.process_time() - start)
    return best, result


def profile_speed(requests: int, rounds: int) -> dict[str, object]:
    cpu_s, run = best_of(
        rounds, lambda: profile("h100", LLAMA_8B, 512, 128, concurrency=64, requests=requests)
    )
    gpu_s = run.simulated_s * 1  # one GPU
    return {
        "setting": f"1 x H100, {LLAMA_8B}, 64 in flight, {requests} requests, 512 in / 128 out",
        "simulated_gpu_s": round(gpu_s, 2),
        "cpu_s": round(cpu_s, 4),
        "engine_steps": run.steps,
        "simulated_gpu_s_per_cpu_s": round(gpu_s / cpu_s, 1),
        "goal": GOAL,
        "meets_goal": gpu_s / cpu_s >= GOAL,
    }


PLANS = {
    "8B at 10 req/s, 512/128, every GPU kind": PlanRequest((ModelWorkload(LLAMA_8B, 10.0),)),
    "8B at 40 req/s, 1024/256 (cv 0.5), every GPU kind": PlanRequest(
        (ModelWorkload(LLAMA_8B, 40.0, Lengths(1024, 0.5), Lengths(256, 0.5)),)
    ),
    "70B at 5 req/s, 512/128, every GPU kind": PlanRequest(
        (ModelWorkload("meta-llama/Llama-3.1-70B-Instruct", 5.0),)
    ),
    "8B 10 req/s + Qwen-14B 3 req/s, SLO 300/30 ms": PlanRequest(
        (ModelWorkload(LLAMA_8B, 10.0), ModelWorkload("Qwen/Qwen2.5-14B-Instruct", 3.0)),
        Slo(300, 30),
    ),
}


def plan_cost(rounds: int) -> dict[str, object]:
    figures: dict[str, object] = {}
    for name, request in PLANS.items():
        cpu_s, result = best_of(rounds, lambda r=request: plan(r))
        figures[name] = {
            "cpu_s": round(cpu_s, 3),
            "runs": result.runs,
            "cost_per_hour": result.cost_per_hour,
            "fleets": [
                f"{p.best.workers} x {p.best.gpu_count} {p.best.gpu}" if p.best else None
                for p in result.pools
            ],
        }
    return figures


async def _live(generations: int, concurrency: int, max_tokens: int) -> int:
    backend = SimBackend("h100", [LLAMA_8B], speed=0)
    gate = asyncio.Semaphore(concurrency)
    tokens = 0

    async def one(i: int) -> None:
        nonlocal tokens
        request = GenerationRequest(
            f"t{i}", LLAMA_8B, (Message("user", f"question {i} " * 100),), max_tokens, seed=i
        )
        async with gate:
            async for event in backend.generate(request):
                if isinstance(event, Chunk):
                    tokens += event.tokens

    await asyncio.gather(*(one(i) for i in range(generations)))
    await backend.close()
    return tokens


def live_cost(generations: int, rounds: int) -> dict[str, object]:
    concurrency, max_tokens = 64, 256
    cpu_s, tokens = best_of(
        rounds, lambda: asyncio.run(_live(generations, concurrency, max_tokens))
    )
    return {
        "setting": f"SimBackend('h100', speed=0), {generations} generations, "
        f"{concurrency} concurrent, max_tokens {max_tokens}",
        "tokens": tokens,
        "cpu_s": round(cpu_s, 3),
        "cpu_ms_per_1000_tokens": round(1e3 * cpu_s / tokens * 1000, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000, help="sim profile requests")
    parser.add_argument("--generations", type=int, default=512, help="live generations")
    parser.add_argument("--rounds", type=int, default=3, help="best of this many")
    args = parser.parse_args()
    results = {
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
        "sim_profile": profile_speed(args.requests, args.rounds),
        "plan": plan_cost(args.rounds),
        "live_sim_backend": live_cost(args.generations, args.rounds),
    }
    out = ROOT / "bench" / "results" / f"sim-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
