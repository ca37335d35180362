"""Runs every benchmark in turn at its defaults (`make bench`): the core, the gateway, then
the simulator (profile speed, planner cost) and prefix-aware dispatch on the virtual clock.

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
    runs = [
        ["bench/core_bench.py", "--seconds", seconds],
        ["bench/gateway_bench.py", "--seconds", seconds],
        ["bench/sim_bench.py"],  # virtual clock: no --seconds
        ["bench/prefix_bench.py"],
    ]
    for script, *args in runs:
        print(f"--> {script}", flush=True)
        if subprocess.call([sys.executable, script, *args], cwd=ROOT) != 0:
            failed.append(script)
    if failed:
        print("failed:", ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
