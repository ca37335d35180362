"""Gateway benchmark: non-streaming requests/s and p50/p99 latency at concurrency 1 and N, and
streaming content chunks/s, against the product and its two baselines in the same run.

    python bench/gateway_bench.py [--seconds 10] [--rounds 1] [--concurrency 32]
    python bench/gateway_bench.py --base-url http://host:4000/v1 --api-key sk-...  # any gateway
    python bench/gateway_bench.py --variant mine=../other-checkout  # a change, same run

Targets: `bare` (a Starlette endpoint with a fixed answer: the ceiling), `relay` (bench/relay:
gateway -> core -> worker over grpc.aio with nothing else: the baseline), `product`
(`gpucloud up` with zero-delay sim workers) or `external` (--base-url). Needs wrk
(`apt-get install -y wrk`). Writes bench/results/gateway-<time>.json and .md. See
bench/README.md for the method.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import time
import timeit
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import loadgen
import orjson
import report
import targets
from procs import ROOT, cpu_percent, machine, sample
from targets import Target

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
PROMPT = "Say something short."
WARMUP_S = 2.0


def revision() -> str:
    """The commit the product runs from, "+dirty" when its packages have local changes."""
    git = ["git", "-C", str(ROOT)]
    try:
        head = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        changed = subprocess.run(
            [*git, "status", "--porcelain", "--", "proto", "server", "gateway", "worker_agent"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if changed else "")


def calibration_us() -> float:
    """µs per sum(range(10_000)) now: how fast (or how shared) the machine was during the run."""
    return min(timeit.repeat("sum(range(10_000))", number=200, repeat=5)) / 200 * 1e6


def body(model: str, max_tokens: int, stream: bool) -> bytes:
    request: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": max_tokens,
    }
    if stream:
        request["stream"] = True
    return orjson.dumps(request)


def with_cpu(target: Target, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Runs one load; adds the CPU %% of each of the target's processes meanwhile and the CPU
    time all of them spent per request (or per streamed chunk), which a busy machine skews
    less than throughput."""
    before = {role: sample(pid) for role, pid in target.processes.items()}
    result = run()
    after = {role: sample(pid) for role, pid in target.processes.items()}
    result["cpu_percent"] = {
        role: round(cpu_percent(before[role], after[role]), 1) for role in before
    }
    if before:
        spent = sum(after[role].cpu_seconds - before[role].cpu_seconds for role in before)
        if result.get("requests"):
            result["cpu_ms_per_request"] = 1000 * spent / result["requests"]
        if result.get("chunks"):
            result["cpu_us_per_chunk"] = 1e6 * spent / result["chunks"]
    return result


def one_round(up: list[Target], args: argparse.Namespace, warm: bool) -> dict[str, Any]:
    """Each load against every target in turn, so the targets share the machine's mood."""
    plain = body(args.model, args.max_tokens, stream=False)
    streaming = body(args.model, args.stream_tokens, stream=True)
    c, seconds = args.concurrency, args.seconds
    loads: dict[str, Callable[[Target], dict[str, Any]]] = {
        "c1": lambda t: loadgen.wrk(t.chat_url, t.keys, plain, 1, seconds),
        "cN": lambda t: loadgen.wrk(t.chat_url, t.keys, plain, c, seconds),
        "stream": lambda t: loadgen.streams(t.chat_url, t.keys, streaming, c, seconds),
    }
    loads = {name: run for name, run in loads.items() if name in args.loads}
    if warm:
        for target in up:
            loadgen.wrk(target.chat_url, target.keys, plain, c, WARMUP_S)
    out: dict[str, Any] = {target.name: {} for target in up}
    for load, run in loads.items():
        for target in up:
            print(f"  {load:>6} {target.name}", flush=True)
            out[target.name][load.replace("cN", f"c{c}")] = with_cpu(target, lambda: run(target))  # noqa: B023
    return out


def median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-field median over rounds (nested dicts too)."""
    out: dict[str, Any] = {}
    for name, first in runs[0].items():
        values = [run[name] for run in runs]
        if isinstance(first, dict):
            out[name] = median(values)
        elif isinstance(first, int | float):
            out[name] = statistics.median(v for v in values if v is not None)
    return out


@contextlib.contextmanager
def running(names: list[str], args: argparse.Namespace) -> Iterator[list[Target]]:
    variants = dict(args.variant)
    with contextlib.ExitStack() as stack:
        up: list[Target] = []
        for name in names:
            print(f"starting {name}", flush=True)
            target: contextlib.AbstractContextManager[Target]
            if name == "bare":
                target = targets.bare()
            elif name == "relay":
                target = targets.relay()
            elif name == "external":
                target = targets.external(args.base_url, args.api_key)
            else:
                checkout = variants.get(name)
                target = targets.product(args.workers, args.keys, name, checkout)
            up.append(stack.enter_context(target))
        yield up


def variant(text: str) -> tuple[str, Path]:
    name, _, path = text.partition("=")
    if not name or not path or name in ("bare", "relay", "product", "external"):
        raise argparse.ArgumentTypeError("expected NAME=DIR with a new name")
    return name, Path(path)


def run(args: argparse.Namespace) -> dict[str, Any]:
    names = args.targets.split(",") + [name for name, _ in args.variant]
    results: dict[str, Any] = {
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "revision": revision(),
        "calibration_us_before": round(calibration_us(), 1),
        "settings": {
            "model": args.model, "max_tokens": args.max_tokens,
            "stream_tokens": args.stream_tokens, "concurrency": args.concurrency,
            "seconds": args.seconds, "rounds": args.rounds, "product_workers": args.workers,
            "product_keys": args.keys,
            "variants": {name: str(path) for name, path in args.variant},
        },
        "targets": {},
    }  # fmt: skip
    with running(names, args) as up:
        answers = {
            t.name: targets.wait_answer(t, body(args.model, args.max_tokens, False)) for t in up
        }
        rounds = []
        for i in range(args.rounds):
            print(f"round {i + 1}/{args.rounds}", flush=True)
            rounds.append(one_round(up, args, warm=i == 0))
    for name in rounds[0]:
        runs = [r[name] for r in rounds]
        usage = answers[name].get("usage", {})
        results["targets"][name] = {
            **median(runs),
            "completion_tokens": usage.get("completion_tokens"),
            "rounds": runs,
        }
    results["calibration_us_after"] = round(calibration_us(), 1)
    # Ratios within each round (same minutes of the machine), then their median.
    per_round = [report.ratios(r, args.concurrency) for r in rounds]
    results["ratios"] = report.with_goals(median(per_round), args.concurrency, results["targets"])
    results["ratios_per_round"] = per_round
    return results


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--targets", help="comma-separated: bare,relay,product,external")
    parser.add_argument("--base-url", help="an OpenAI-compatible base URL to measure (…/v1)")
    parser.add_argument("--api-key", help="its API key")
    parser.add_argument("--model", default=MODEL)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--stream-tokens", type=int, default=128, help="max_tokens of streams")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=1, help="medians over this many rounds")
    parser.add_argument("--workers", type=int, default=4, help="sim workers of the product")
    parser.add_argument(
        "--keys", type=int, default=8, help="API keys the product's load rotates over"
    )
    parser.add_argument(
        "--variant", type=variant, action="append", default=[], metavar="NAME=DIR",
        help="also run the product from another checkout of the repository (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--out", type=Path, help="results JSON (default bench/results/gateway-<time>.json)"
    )
    parser.add_argument(
        "--loads", default="c1,cN,stream", help="which loads: c1, cN (--concurrency), stream"
    )
    args = parser.parse_args(argv)
    args.loads = args.loads.split(",")
    if args.targets is None:
        args.targets = "bare,relay,external" if args.base_url else "bare,relay,product"
    if "external" in args.targets.split(",") and not args.base_url:
        parser.error("the external target needs --base-url")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    results = run(args)
    out = args.out or ROOT / "bench" / "results" / f"gateway-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    table = report.markdown(results)
    out.with_suffix(".md").write_text(table)
    print(table)
    print(f"written to {out} and {out.with_suffix('.md').name}")


if __name__ == "__main__":
    main()
