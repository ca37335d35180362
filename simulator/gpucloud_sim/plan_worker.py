"""Runs one plan in a process of its own: a pickled PlanRequest on stdin, the plan's JSON
on stdout. The gateway plans this way so that minutes of CPU or a runaway plan never
hold its event loop's interpreter; it kills the process at its deadline."""

from __future__ import annotations

import pickle
import sys

import orjson

from gpucloud_sim.plan import PlanRequest, plan


def main() -> int:
    # Written by the parent gateway process only, never by a client: pickle is safe here.
    request = pickle.loads(sys.stdin.buffer.read())  # noqa: S301
    if not isinstance(request, PlanRequest):
        print("plan_worker: stdin holds no PlanRequest", file=sys.stderr)
        return 2
    sys.stdout.buffer.write(orjson.dumps(plan(request).to_json()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
