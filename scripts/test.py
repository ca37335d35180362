"""Runs the test suite (what `make test`, `make test-llama` and CI run); extra args go to pytest.

By default every test except those marked `llama`, which drive a real llama.cpp
server and need the `llama` extra (built from source, minutes); those are
deselected, not skipped. `--llama` runs only them. A `-m` given here wins.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    args = sys.argv[1:]
    selection = "not llama"
    if "--llama" in args:
        args.remove("--llama")
        selection = "llama"
    command = [sys.executable, "-m", "pytest", "-m", selection, *args]
    return subprocess.call(command, cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main())
