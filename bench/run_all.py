"""Runs every benchmark in turn at its defaults (`make bench`): the core, then the gateway.

    python bench/run_all.py [--seconds 10]

Each writes its JSON (and the gateway its markdown table) under bench/results/.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from procs import ROOT


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", default="10", help="length of each load")
    seconds = parser.parse_args().seconds
    failed = []
    for script in ("bench/core_bench.py", "bench/gateway_bench.py"):
        print(f"--> {script}", flush=True)
        if subprocess.call([sys.executable, script, "--seconds", seconds], cwd=ROOT) != 0:
            failed.append(script)
    if failed:
        print("failed:", ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
