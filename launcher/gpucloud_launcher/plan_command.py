"""`gpucloud plan`: the cheapest simulated fleet that meets latency SLOs for a workload."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from gpucloud_common.settings import SettingsError, add_arguments, load, option
from gpucloud_launcher.sim_commands import Parser, UsageError, fail, positive
from gpucloud_launcher.usage_trace import read_trace
from gpucloud_server.config import CoreSettings
from gpucloud_sim.plan import (
    DEFAULT_GPU_COUNTS,
    DEFAULT_PRICES,
    FleetOutcome,
    Lengths,
    ModelWorkload,
    PlanRequest,
    PlanResult,
    PoolPlan,
    Slo,
    plan,
)

T = TypeVar("T")

PROG = "gpucloud plan"
# The core's options `--from-usage` reads the usage table with.
STORAGE_OPTIONS = ("data_dir", "database_url")
DEFAULT_MODEL = "meta-llama/Meta-Llama-3-8B-Instruct"


def _listed(parse: Callable[[str], object]) -> Callable[[str], tuple[object, ...]]:
    """A comma-separated list of values, each read by `parse`."""

    def read(text: str) -> tuple[object, ...]:
        items = tuple(parse(part.strip()) for part in text.split(",") if part.strip())
        if not items:
            raise ValueError("needs at least one value")
        return items

    return read


def _price(text: str) -> tuple[str, float]:
    """`h100=2.49`: a GPU kind and its $ per GPU-hour."""
    key, _, value = text.partition("=")
    try:
        price = float(value)
    except ValueError:
        price = -1.0
    if not key.strip() or not (0 <= price < float("inf")):
        raise ValueError(f"{text!r} is not GPU=DOLLARS_PER_HOUR")
    return key.strip().lower(), price


@dataclass(frozen=True, slots=True)
class PlanOptions:
    """`gpucloud plan`'s flags. A list flag gives one value per model or one for all."""

    model: tuple[str, ...] = option(
        (DEFAULT_MODEL,),
        flag="--model",
        parse=_listed(str),
        help="catalog model ids, comma-separated: a pool each",
    )
    rate: tuple[float, ...] = option(
        (1.0,),
        flag="--rate",
        parse=_listed(positive(float)),
        help="Poisson arrivals per second, per model",
    )
    prompt_tokens: tuple[int, ...] = option(
        (512,), flag="--prompt-tokens", parse=_listed(positive(int)), help="mean prompt tokens"
    )
    output_tokens: tuple[int, ...] = option(
        (128,), flag="--output-tokens", parse=_listed(positive(int)), help="mean output tokens"
    )
    length_cv: float = option(
        0.0, flag="--length-cv", help="spread of both lengths (lognormal coefficient of variation)"
    )
    ttft_p99_ms: float = option(500.0, flag="--ttft-p99-ms", parse=positive(float), help="SLO")
    tpot_p99_ms: float = option(50.0, flag="--tpot-p99-ms", parse=positive(float), help="SLO")
    price: tuple[tuple[str, float], ...] = option(
        (),
        flag="--price",
        parse=_listed(_price),
        help="$/GPU-hour overrides, e.g. h100=2.49,a100=1.29",
        default_help=", ".join(f"{k}={v}" for k, v in DEFAULT_PRICES.items()) + " (illustrative)",
    )
    gpus: tuple[str, ...] = option(
        (), flag="--gpus", parse=_listed(str), help="GPU kinds to try", default_help="all priced"
    )
    gpu_counts: tuple[int, ...] = option(
        DEFAULT_GPU_COUNTS, flag="--gpu-counts", parse=_listed(positive(int)), help="per worker"
    )
    precision: str = option("bf16", flag="--precision", choices=("bf16", "fp8"), help="weights")
    max_gpus: int = option(64, flag="--max-gpus", parse=positive(int), help="per model's pool")
    requests: int = option(400, flag="--requests", help="simulated per fleet run")
    seed: int = option(0, flag="--seed", help="seeds arrivals and request sizes")
    from_usage: bool = option(
        False, flag="--from-usage", help="replay the usage table's rates and sizes per model"
    )
    since_hours: float | None = option(
        None, flag="--since-hours", parse=positive(float), help="with --from-usage: window"
    )
    json: bool = option(False, flag="--json", help="print the plan as JSON")


def parser() -> Parser:
    cli = Parser(PROG, "Find the cheapest simulated fleet that meets TTFT/TPOT p99 SLOs.")
    add_arguments(cli, PlanOptions)
    add_arguments(cli, CoreSettings, only=STORAGE_OPTIONS, title="usage table (--from-usage)")
    return cli


def plan_main(argv: Sequence[str], env: Mapping[str, str] | None = None) -> int:
    """`gpucloud plan`: plans, then prints the table or JSON."""
    env = os.environ if env is None else env
    try:
        args = parser().parse_args(list(argv))
        options = load(PlanOptions, args, env)
        request = plan_request(options, _workloads(options, args, env))
        result = plan(request)
    except (ValueError, SettingsError) as error:
        return fail(PROG, str(error))
    print(json.dumps(result.to_json()) if options.json else plan_table(request, result))
    return 0 if result.meets_slo else 1


def _workloads(
    options: PlanOptions, args: argparse.Namespace, env: Mapping[str, str]
) -> tuple[ModelWorkload, ...]:
    if options.from_usage:
        storage = load(CoreSettings, args, env, only=STORAGE_OPTIONS)
        since = None
        if options.since_hours is not None:
            since = int((time.time() - options.since_hours * 3600) * 1000)
        models = options.model if "model" in vars(args) else ()
        trace = asyncio.run(read_trace(storage, since_ms=since, models=models))
        for name in trace.skipped:
            print(f"{PROG}: skipping {name!r}: not in the simulator's catalog", file=sys.stderr)
        return trace.workloads
    count = len(options.model)
    lists = {"--rate": options.rate, "--prompt-tokens": options.prompt_tokens}
    lists["--output-tokens"] = options.output_tokens
    for flag, values in lists.items():
        if len(values) not in (1, count):
            raise UsageError(f"{flag} needs one value or one per model ({count})")
    return tuple(
        ModelWorkload(
            model,
            _nth(options.rate, i),
            Lengths(_nth(options.prompt_tokens, i), options.length_cv),
            Lengths(_nth(options.output_tokens, i), options.length_cv),
        )
        for i, model in enumerate(options.model)
    )


def _nth(values: tuple[T, ...], index: int) -> T:
    return values[index] if len(values) > 1 else values[0]


def plan_request(options: PlanOptions, workloads: tuple[ModelWorkload, ...]) -> PlanRequest:
    return PlanRequest(
        workloads,
        Slo(options.ttft_p99_ms, options.tpot_p99_ms),
        prices={**DEFAULT_PRICES, **dict(options.price)},
        gpus=options.gpus,
        gpu_counts=options.gpu_counts,
        precision=options.precision,
        max_gpus=options.max_gpus,
        requests=options.requests,
        seed=options.seed,
    )


def plan_table(request: PlanRequest, result: PlanResult) -> str:
    """The readable plan: per model the chosen fleet, the one just too small, the rest."""
    slo = request.slo
    prices = ", ".join(f"{k} ${request.prices[k]:g}" for k in request.kinds())
    lines = [
        f"SLO: TTFT p99 <= {slo.ttft_p99_ms:g} ms, TPOT p99 <= {slo.tpot_p99_ms:g} ms; "
        f"$/GPU-hour: {prices}",
    ]
    for pool in result.pools:
        lines += ["", *_pool_lines(pool)]
    lines.append("")
    if result.cost_per_hour is None:
        lines.append("no fleet within --max-gpus meets the SLOs for every model")
    else:
        lines.append(f"total: ${result.cost_per_hour:.2f}/hour")
    note = "; budget exhausted, not every candidate was tried" if result.truncated else ""
    lines.append(f"({result.runs} fleet runs simulated on the virtual clock{note})")
    return "\n".join(lines)


def _pool_lines(pool: PoolPlan) -> list[str]:
    w = pool.workload
    prompt, output = w.mean_tokens()
    recorded = f", {len(w.sizes)} recorded requests" if w.sizes else ""
    lines = [
        f"{w.model}: {w.rate_per_s:.3g} requests/s, {prompt:.0f} prompt / {output:.0f} output "
        f"tokens on average{recorded}"
    ]
    if pool.best is None:
        lines.append("  no fleet meets the SLOs")
    else:
        best = pool.best
        beyond = f", then misses {best.breaks_on}" if best.breaks_on else " or more"
        lines.append(f"  best:    {_fleet(best)}")
        lines.append(
            f"           headroom: meets the SLOs up to {best.headroom:g}x the rate{beyond}"
        )
    if pool.smaller is not None:
        lines.append(f"  smaller: {_fleet(pool.smaller)}")
    lines.append(
        f"  {'candidate':<28}{'$/hour':>9}{'TTFT p99':>10}{'TPOT p99':>10}  {'meets':<6}misses"
    )
    for c in pool.candidates:
        s = c.summary
        ttft, tpot = (f"{s.ttft_ms_p99:.0f}", f"{s.tpot_ms_p99:.1f}") if s else ("-", "-")
        verdict = "yes" if c.meets_slo else f"no    {c.breaks_on}"
        cost = f"{c.cost_per_hour:.2f}" if c.workers else "-"
        lines.append(f"  {_shape(c):<28}{cost:>9}{ttft:>10}{tpot:>10}  {verdict}")
    if pool.skipped:
        names = ", ".join(
            f"{workers} x " + (gpu if count == 1 else f"({count} x {gpu})")
            for gpu, count, workers in pool.skipped
        )
        lines.append(f"  not simulated (estimated to cost more): {names}")
    return lines


def _shape(c: FleetOutcome) -> str:
    """`3 x h100`, `2 x (4 x a100)`: workers of their GPUs."""
    if c.workers == 0:
        why = "does not fit" if c.breaks_on == "memory" else f"no {c.precision}"
        return f"{c.gpu} ({why})"
    worker = c.gpu if c.gpu_count == 1 else f"({c.gpu_count} x {c.gpu})"
    return f"{c.workers} x {worker}"


def _fleet(c: FleetOutcome) -> str:
    s = c.summary
    figures = f"TTFT p99 {s.ttft_ms_p99:.0f} ms, TPOT p99 {s.tpot_ms_p99:.1f} ms" if s else ""
    verdict = "meets the SLOs" if c.meets_slo else f"misses {c.breaks_on}"
    gpus = f"{c.gpus} GPU" + ("s" if c.gpus != 1 else "")
    return f"{_shape(c)}, {gpus}, ${c.cost_per_hour:.2f}/hour: {figures}; {verdict}"
