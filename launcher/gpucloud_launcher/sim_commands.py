"""`gpucloud sim profile`: one simulated worker benchmarked on the virtual clock."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NoReturn

from gpucloud_common.settings import SettingsError, add_arguments, load, option
from gpucloud_sim import GPUS, find_gpu, find_model, profile
from gpucloud_sim.jsonable import profile_json
from gpucloud_sim.results import ProfileResult, Summary

SIM_USAGE = """usage: gpucloud sim COMMAND [options]

commands:
  profile   benchmark one simulated worker on the virtual clock (no sleeping)
"""
# Keeps one `sim profile` to seconds of CPU at most.
MAX_REQUESTS = 100_000


class UsageError(ValueError):
    """A command line the command refuses; printed on one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """A parser whose errors raise UsageError instead of printing usage and exiting."""

    def __init__(self, prog: str, description: str) -> None:
        super().__init__(
            prog=prog,
            description=description,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    """A flag parser for a number > 0."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{text!r} must be > 0")
        return value

    return parse


@dataclass(frozen=True, slots=True)
class ProfileOptions:
    """`gpucloud sim profile`'s flags."""

    gpu: str = option("h100", flag="--gpu", help=f"GPU kind ({', '.join(GPUS)})")
    model: str = option(
        "meta-llama/Meta-Llama-3-8B-Instruct",
        flag="--model",
        help="catalog model id, or the part after the '/'",
    )
    prompt_tokens: int = option(
        512, flag="--prompt-tokens", parse=positive(int), help="per request"
    )
    output_tokens: int = option(
        128, flag="--output-tokens", parse=positive(int), help="per request"
    )
    concurrency: int | None = option(
        None,
        flag="--concurrency",
        parse=positive(int),
        help="requests kept in flight (closed loop)",
        default_help="one at a time",
    )
    rate: float | None = option(
        None,
        flag="--rate",
        parse=positive(float),
        help="Poisson arrivals per second (open loop); not with --concurrency",
    )
    requests: int = option(100, flag="--requests", parse=positive(int), help="requests sent")
    gpu_count: int = option(1, flag="--gpu-count", parse=positive(int), help="tensor parallel")
    workers: int = option(1, flag="--workers", parse=positive(int), help="least-loaded dispatch")
    precision: str = option("bf16", flag="--precision", choices=("bf16", "fp8"), help="weights")
    seed: int = option(0, flag="--seed", help="seeds the Poisson arrivals")
    json: bool = option(False, flag="--json", help="print JSON: the summary and every request")


def fail(prog: str, message: str) -> int:
    """The one-line error every refusal prints; exit status 2."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 2


def sim_main(argv: Sequence[str]) -> int:
    """`gpucloud sim COMMAND`."""
    args = list(argv)
    if not args or args[0] in {"-h", "--help", "help"}:
        print(SIM_USAGE, end="")
        return 0 if args else 2
    if args[0] != "profile":
        print(f"gpucloud sim: unknown command '{args[0]}'\n\n{SIM_USAGE}", end="", file=sys.stderr)
        return 2
    return profile_main(args[1:])


def profile_main(argv: Sequence[str], env: Mapping[str, str] | None = None) -> int:
    """`gpucloud sim profile`: runs the workload and prints the table or JSON."""
    prog = "gpucloud sim profile"
    cli = Parser(prog, "Benchmark one simulated worker on the virtual clock.")
    add_arguments(cli, ProfileOptions)
    try:
        options = load(ProfileOptions, cli.parse_args(list(argv)), env or {})
        if options.concurrency is not None and options.rate is not None:
            raise UsageError("give --concurrency (closed loop) or --rate (open loop), not both")
        if options.requests > MAX_REQUESTS:
            raise UsageError(f"--requests must be at most {MAX_REQUESTS}")
        result = profile(
            options.gpu, options.model, options.prompt_tokens, options.output_tokens,
            options.concurrency, options.requests, options.rate, options.gpu_count,
            options.precision, options.seed, workers=options.workers,
        )  # fmt: skip
    except (ValueError, SettingsError) as error:
        return fail(prog, str(error))
    if options.json:
        print(json.dumps(profile_json(result)))
    else:
        print(profile_table(options, result))
    return 0


def profile_table(options: ProfileOptions, result: ProfileResult) -> str:
    """The readable report: the setting, then the figures a benchmark would measure."""
    gpu, model = find_gpu(options.gpu).name, find_model(options.model).id
    if options.rate is not None:
        load_text = f"Poisson arrivals at {options.rate:g}/s"
    elif options.concurrency is not None:
        load_text = f"{options.concurrency} in flight"
    else:
        load_text = "one at a time"
    workers = f"{options.workers} workers of " if options.workers > 1 else ""
    s = result.summary
    lines = [
        f"{model} ({options.precision}) on {workers}{options.gpu_count} x {gpu}",
        f"{options.requests} requests, {options.prompt_tokens} prompt / "
        f"{options.output_tokens} output tokens, {load_text}",
        f"simulated {result.simulated_s:.2f} s ({result.steps} engine steps, "
        f"{result.preemptions} preemptions)",
        "",
        *summary_rows(s),
    ]
    return "\n".join(line.rstrip() for line in lines)


def summary_rows(s: Summary) -> list[str]:
    """A summary as an aligned table of p50/p99 and throughput."""
    return [
        f"{'':<18}{'p50':>10}{'p99':>10}",
        f"{'TTFT (ms)':<18}{_ms(s.ttft_ms_p50):>10}{_ms(s.ttft_ms_p99):>10}",
        f"{'TPOT (ms)':<18}{_ms(s.tpot_ms_p50):>10}{_ms(s.tpot_ms_p99):>10}",
        f"{'E2E (ms)':<18}{_ms(s.e2e_ms_p50):>10}{'':>10}",
        f"{'output tokens/s':<18}{s.output_tokens_per_s:>10.1f}",
        f"{'requests/s':<18}{s.requests_per_s:>10.2f}",
    ]


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.1f}"
