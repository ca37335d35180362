"""Prefix-aware dispatch against least-loaded dispatch, on the simulator's virtual clock,
then the cost of one prefix-aware pick in the core.

    python bench/prefix_bench.py [--requests 6000] [--seed 1]

Each scenario runs 4 x H100 (Llama-3.1-8B, 64 slots each: the sim worker's slots) on
an open-loop Poisson workload of 2,048-token system prompts plus 96 tokens of user
message and 128 output tokens, once per dispatch rule. It reports TTFT p50/p99/mean,
the share of prompt tokens served from the prefix cache and GPU-seconds per request
(busy time of all engines / requests). Deterministic: the same seed gives the same
figures. Output: a markdown table, and bench/results/prefix-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from procs import machine

from gpucloud_server.scheduling.prefix import PrefixMemory, block_hashes
from gpucloud_server.scheduling.registry import Gpu, Registry, WorkerInfo
from gpucloud_sim import GpuEngine, Workload, find_gpu, find_model, simulate_fleet
from gpucloud_sim.fleet import Dispatch

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
ENGINES = 4
SLOTS = 64
SYSTEM_TOKENS, USER_TOKENS, OUTPUT_TOKENS = 2048, 96, 128
# (name, distinct system prompts, arrivals per second; None: every slot always busy)
SCENARIOS = (
    ("4 prompts, 100/s (near capacity)", 4, 100.0),
    ("4 prompts, saturated", 4, None),
    ("1 prompt, 100/s", 1, 100.0),
    ("256 prompts, 50/s", 256, 50.0),
    ("256 prompts, saturated", 256, None),
)
RESULTS = Path(__file__).parent / "results"


@dataclass(frozen=True, slots=True)
class Row:
    scenario: str
    dispatch: str
    ttft_ms_p50: float
    ttft_ms_p99: float
    ttft_ms_mean: float
    cached_share: float
    gpu_s_per_request: float
    simulated_s: float


def run(
    name: str, prompts: int, rate: float | None, dispatch: Dispatch, args: argparse.Namespace
) -> Row:
    gpu, model = find_gpu("h100"), find_model(MODEL)
    engines = [GpuEngine(gpu, [model]) for _ in range(ENGINES)]
    workload = Workload(
        prompt_tokens=SYSTEM_TOKENS + USER_TOKENS,
        output_tokens=OUTPUT_TOKENS,
        requests=args.requests,
        rate=rate,
        concurrency=None if rate else ENGINES * SLOTS,
        shared_prefix_tokens=SYSTEM_TOKENS,
        prefix_groups=prompts,
        seed=args.seed,
    )
    result = simulate_fleet(engines, model, workload, dispatch=dispatch, slots=SLOTS)
    end = max(engine.now for engine in engines)
    busy_s = sum(engine.sample(end).busy * end for engine in engines)
    ttft = [r.ttft_ms for r in result.requests]
    cached = sum(r.cached_tokens for r in result.requests)
    return Row(
        scenario=name,
        dispatch=dispatch,
        ttft_ms_p50=result.summary.ttft_ms_p50,
        ttft_ms_p99=result.summary.ttft_ms_p99,
        ttft_ms_mean=sum(ttft) / len(ttft),
        cached_share=cached / (len(ttft) * workload.prompt_tokens),
        gpu_s_per_request=busy_s / len(ttft),
        simulated_s=result.simulated_s,
    )


def pick_cost_us(workers: int, prompts: int, aware: bool, picks: int = 5_000) -> float:
    """Microseconds per Registry.pick with `workers` registered workers that were each
    sent one of `prompts` distinct system prompts; `aware`: with prefix memory."""
    registry = Registry(prefixes=PrefixMemory() if aware else None)
    gpu = Gpu("H100", 80 << 30, 3350.0, 989.0)
    for i in range(workers):
        info = WorkerInfo(f"w{i}", f"w{i}", "bench", (gpu,), ((MODEL, "bench"),), 64, 1.0)
        registry.add(info, now=0.0, wall=0.0)
    hashes = [
        block_hashes(MODEL, (("system", f"prompt {p}: " + "be helpful. " * 700),))
        for p in range(prompts)
    ]
    for i, worker in enumerate(registry):
        registry.sent(worker, hashes[i % prompts])
    start = time.perf_counter()
    for n in range(picks):
        registry.pick(MODEL, None, hashes[n % prompts])
    return (time.perf_counter() - start) / picks * 1e6


def table(rows: list[Row]) -> str:
    lines = [
        "| scenario | dispatch | TTFT p50 ms | TTFT p99 ms | TTFT mean ms | prompt cached "
        "| GPU-s/request |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r.scenario} | {r.dispatch} | {r.ttft_ms_p50:.1f} | {r.ttft_ms_p99:.1f} "
            f"| {r.ttft_ms_mean:.1f} | {r.cached_share:.1%} | {r.gpu_s_per_request:.4f} |"
        )
    return "\n".join(lines)


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--requests", type=int, default=6000)
    cli.add_argument("--seed", type=int, default=1)
    args = cli.parse_args()
    policies: tuple[Dispatch, ...] = ("least_loaded", "prefix")
    rows = [run(*s, p, args) for s in SCENARIOS for p in policies]
    costs = {
        f"{n} workers, {kind}": pick_cost_us(n, 64, kind == "prefix")
        for n in (4, 100, 1000)
        for kind in policies
    }
    print(f"machine: {machine()}\n")
    print(table(rows))
    print("\nRegistry.pick(), µs: " + ", ".join(f"{n}: {c:.1f}" for n, c in costs.items()))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"prefix-{time.strftime('%Y%m%d-%H%M%S')}.json"
    data = {"machine": machine(), "requests": args.requests, "seed": args.seed}
    out.write_text(
        json.dumps({**data, "rows": [asdict(r) for r in rows], "pick_us": costs}, indent=1)
    )
    print(f"\n{out}")


if __name__ == "__main__":
    main()
