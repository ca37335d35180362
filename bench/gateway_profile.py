"""Where the time goes: py-spy samples each process of a target while wrk (or the SSE client)
loads it, then ranks functions by the share of samples they are on the stack (total) and at
the top of it (self), and rolls samples up by package.

    python bench/gateway_profile.py [--target product] [--seconds 20] [--stream] [--out DIR]

Writes DIR/<target>-<role>.svg (flamegraph) and .txt (collapsed stacks) and prints the
tables; --summary FILE also writes them as markdown. Needs py-spy (dev extra; root or
ptrace permission) and wrk.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import loadgen
import targets
from gateway_bench import MODEL, body
from procs import sample
from targets import Target

PY_SPY = Path(sys.executable).parent / "py-spy"
FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")
# Packages samples are rolled up by; the first match of a frame's file wins.
PACKAGES = (
    "gpucloud_gateway", "gpucloud_server", "gpucloud_worker", "gpucloud/v1", "bench/relay",
    "starlette", "uvicorn", "grpc", "google/protobuf", "prometheus_client", "logging",
    "sqlalchemy", "aiosqlite", "limits", "orjson", "httptools", "uvloop", "asyncio", "json",
)  # fmt: skip


def stem(out: Path, target: str, role: str) -> Path:
    """Where the collapsed stacks of one process go (the flamegraph: .svg beside it)."""
    return out / f"{target}-{role.replace('+', '-')}.txt"


@contextlib.contextmanager
def recording(target: Target, out: Path, seconds: float, rate: int, native: bool) -> Iterator[None]:
    """py-spy on every process of the target for `seconds`, as raw stacks and a flamegraph."""
    spies = []
    for role, pid in target.processes.items():
        path = stem(out, target.name, role).with_suffix("")
        for fmt, suffix in (("raw", ".txt"), ("flamegraph", ".svg")):
            command = [str(PY_SPY), "record", "--pid", str(pid), "--duration", str(round(seconds)),
                       "--rate", str(rate), "--format", fmt, "--output", f"{path}{suffix}",
                       *(["--native"] if native else ["--nonblocking"])]  # fmt: skip
            spies.append(subprocess.Popen(command, stdout=subprocess.DEVNULL))
    try:
        yield
    finally:
        for spy in spies:
            spy.wait(seconds + 30)


def package(path: str) -> str:
    return next((name for name in PACKAGES if name in path), "other")


def summarise(collapsed: Path, top: int, cpu_us: float, unit: str) -> str:
    """Markdown: samples by package (self), the top functions by total and self share, each
    also as a share of the process's measured CPU µs per `unit` (py-spy samples runnable
    threads, so shares are of busy time; /proc says what that time cost in CPU)."""
    total = 0
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    packages: collections.Counter[str] = collections.Counter()
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        frames = [m for f in stack.split(";") if (m := FRAME.match(f))]
        if not frames:
            continue
        total += count
        names = [f"{m['func']} ({m['file']})" for m in frames]
        for name in set(names):
            inclusive[name] += count
        own[names[-1]] += count
        packages[package(frames[-1]["file"])] += count
    if not total:
        return f"no samples in {collapsed.name}\n"

    def rows(counter: collections.Counter[str], n: int) -> list[str]:
        return [
            f"| {100 * c / total:5.1f} | {cpu_us * c / total:6.0f} | `{name}` |"
            for name, c in counter.most_common(n)
        ]

    head = f"| %s %% | µs/{unit} | %s |"
    return "\n".join([
        f"#### {collapsed.stem}: {total} samples, {cpu_us:.0f} CPU µs/{unit}",
        "", head % ("self", "package"), "| ---: | ---: | --- |", *rows(packages, len(packages)),
        "", head % ("total", "function"), "| ---: | ---: | --- |", *rows(inclusive, top),
        "", head % ("self", "function"), "| ---: | ---: | --- |", *rows(own, top), "",
    ])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--target", choices=("product", "relay"), default="product")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--stream", action="store_true", help="load with streams, not requests")
    parser.add_argument("--tokens", type=int, help="max_tokens (default 16, streams 128)")
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--native", action="store_true", help="C/Cython frames too (slower)")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--keys", type=int, default=8, help="API keys the load rotates over")
    parser.add_argument("--checkout", type=Path, help="profile the product of another checkout")
    parser.add_argument(
        "--out", type=Path, default=Path(tempfile.gettempdir()) / "gpucloud-profile"
    )
    parser.add_argument("--summary", type=Path, help="also write the tables here (markdown)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    tokens = args.tokens or (128 if args.stream else 16)
    request = body(MODEL, tokens, args.stream)
    start = (
        targets.product(args.workers, args.keys, checkout=args.checkout)
        if args.target == "product"
        else targets.relay()
    )
    with start as target:
        targets.wait_answer(target, body(MODEL, 16, False))
        loadgen.wrk(target.chat_url, target.keys, body(MODEL, 16, False), args.concurrency, 3)
        before = {role: sample(pid) for role, pid in target.processes.items()}
        with recording(target, args.out, args.seconds, args.rate, args.native):
            time.sleep(0.5)  # let py-spy attach
            if args.stream:
                figures = loadgen.streams(
                    target.chat_url, target.keys, request, args.concurrency, args.seconds - 1
                )
            else:
                figures = loadgen.wrk(
                    target.chat_url, target.keys, request, args.concurrency, args.seconds - 1
                )
        spent = {
            r: sample(pid).cpu_seconds - before[r].cpu_seconds
            for r, pid in target.processes.items()
        }
    load = "streams" if args.stream else "requests"
    unit, units = ("chunk", figures["chunks"]) if args.stream else ("req", figures["requests"])
    head = f"### {args.target}, {args.concurrency} concurrent {load}, max_tokens {tokens}\n"
    head += f"\n{figures}\n"
    tables = [
        summarise(stem(args.out, args.target, r), args.top, 1e6 * cpu / max(1, units), unit)
        for r, cpu in spent.items()
    ]
    text = "\n".join([head, *tables])
    print(text)
    if args.summary:
        args.summary.write_text(text)
    print(f"flamegraphs in {args.out}")


if __name__ == "__main__":
    main()
