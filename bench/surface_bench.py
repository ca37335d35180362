"""The wider OpenAI surface under load: embeddings inputs/s (batch 1 and 64) and tool-call
chat requests/s, beside plain chat in the same run, through `gpucloud up` with zero-delay
sim workers.

    python bench/surface_bench.py [--seconds 10] [--rounds 3] [--concurrency 32]
    python bench/surface_bench.py --variant before=../checkout-before  # plain chat, two builds

Each round runs every load against every target in turn (the machine's mood is shared).
With --variant, the same loads run against `gpucloud up` from another checkout too, so
the cost of a change to plain chat is a ratio measured in the same minutes. Needs wrk.
Writes bench/results/surface-<time>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import loadgen
import orjson
import targets
from gateway_bench import calibration_us, revision, variant, with_cpu
from procs import ROOT, machine
from targets import Target

CHAT_MODEL = "meta-llama/Llama-3.1-8B-Instruct"
EMBEDDING_MODEL = "BAAI/bge-small-en-v1.5"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}
SENTENCE = "GPUs batch many requests at once, so their throughput grows with the load."


def chat_body(max_tokens: int, tools: bool) -> bytes:
    request: dict[str, Any] = {
        "model": CHAT_MODEL,
        "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
        "max_tokens": max_tokens,
    }
    if tools:
        request["tools"] = [WEATHER]
        request["tool_choice"] = {"type": "function", "function": {"name": "get_weather"}}
    return orjson.dumps(request)


def embedding_body(batch: int) -> bytes:
    inputs = [f"{i}: {SENTENCE}" for i in range(batch)]
    return orjson.dumps({"model": EMBEDDING_MODEL, "input": inputs})


def loads(args: argparse.Namespace) -> dict[str, tuple[str, bytes, int]]:
    """Load name -> (route, body, inputs per request)."""
    out = {
        "chat": ("/chat/completions", chat_body(args.max_tokens, tools=False), 1),
        "tool_call": ("/chat/completions", chat_body(args.max_tokens, tools=True), 1),
        "embed_1": ("/embeddings", embedding_body(1), 1),
        "embed_64": ("/embeddings", embedding_body(64), 64),
    }
    return {name: load for name, load in out.items() if name in args.loads}


def one_round(up: list[Target], args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {target.name: {} for target in up}
    for name, (route, body, per_request) in loads(args).items():
        for target in up:
            if name != "chat" and target.name != "product":
                continue  # other builds may lack the route: plain chat is the comparison
            url = target.base_url.rstrip("/") + route
            print(f"  {name:>9} {target.name}", flush=True)

            def run(url: str = url, body: bytes = body) -> dict[str, Any]:
                return loadgen.wrk(url, target.keys, body, args.concurrency, args.seconds)  # noqa: B023

            result = with_cpu(target, run)
            result["inputs_per_second"] = result["requests_per_second"] * per_request
            out[target.name][name] = result
    return out


def median(rounds: list[dict[str, Any]], target: str, load: str, field: str) -> float | None:
    values = [r[target][load][field] for r in rounds if load in r.get(target, {})]
    return statistics.median(values) if values else None


@contextlib.contextmanager
def running(args: argparse.Namespace) -> Iterator[list[Target]]:
    with contextlib.ExitStack() as stack:
        up = [stack.enter_context(targets.product(args.workers, args.keys))]
        for name, checkout in args.variant:
            up.append(stack.enter_context(targets.product(args.workers, args.keys, name, checkout)))
        yield up


def run(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "revision": revision(),
        "calibration_us_before": round(calibration_us(), 1),
        "settings": {
            "concurrency": args.concurrency, "seconds": args.seconds, "rounds": args.rounds,
            "max_tokens": args.max_tokens, "product_workers": args.workers,
            "variants": {name: str(path) for name, path in args.variant},
        },
    }  # fmt: skip
    with running(args) as up:
        for target in up:
            targets.wait_answer(target, chat_body(args.max_tokens, tools=False))
            loadgen.wrk(target.chat_url, target.keys, chat_body(args.max_tokens, False), 8, 2.0)
        rounds = []
        for i in range(args.rounds):
            print(f"round {i + 1}/{args.rounds}", flush=True)
            rounds.append(one_round(up, args))
    results["rounds"] = rounds
    results["calibration_us_after"] = round(calibration_us(), 1)
    summary: dict[str, Any] = {}
    for target in up:
        for load in loads(args):
            rps = median(rounds, target.name, load, "requests_per_second")
            if rps is not None:
                summary[f"{target.name}.{load}"] = {
                    "requests_per_second": round(rps, 1),
                    "inputs_per_second": round(
                        median(rounds, target.name, load, "inputs_per_second") or 0.0, 1
                    ),
                    "p50_ms": median(rounds, target.name, load, "p50_ms"),
                    "non_2xx": sum(r[target.name][load]["non_2xx"] for r in rounds),
                }
    # Ratios per round (same minutes), then their median.
    ratios: dict[str, float] = {}
    for name, _ in args.variant:
        per_round = [
            r["product"]["chat"]["requests_per_second"] / r[name]["chat"]["requests_per_second"]
            for r in rounds
        ]
        ratios[f"chat product/{name}"] = round(statistics.median(per_round), 3)
    per_round = [
        r["product"]["tool_call"]["requests_per_second"]
        / r["product"]["chat"]["requests_per_second"]
        for r in rounds
        if "tool_call" in r["product"] and "chat" in r["product"]
    ]
    if per_round:
        ratios["tool_call/chat"] = round(statistics.median(per_round), 3)
    results["summary"] = summary
    results["ratios"] = ratios
    return results


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--workers", type=int, default=4, help="sim workers of the product")
    parser.add_argument("--keys", type=int, default=8)
    parser.add_argument("--loads", default="chat,tool_call,embed_1,embed_64")
    parser.add_argument(
        "--variant", type=variant, action="append", default=[], metavar="NAME=DIR",
        help="also run plain chat against `gpucloud up` from another checkout",
    )  # fmt: skip
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    args.loads = args.loads.split(",")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    results = run(args)
    out = args.out or ROOT / "bench" / "results" / f"surface-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({"summary": results["summary"], "ratios": results["ratios"]}, indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
