"""Static checks CI runs: ruff lint and format, mypy strict, import layers, buf lint,
generated-code drift."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

CHECKS: list[tuple[str, list[str]]] = [
    ("ruff lint", [str(BIN / "ruff"), "check", "."]),
    ("ruff format", [str(BIN / "ruff"), "format", "--check", "."]),
    ("mypy", [str(BIN / "mypy")]),
    ("import layers", [str(BIN / "lint-imports")]),
    ("generated code", [sys.executable, "scripts/gen_protos.py", "--check"]),
]


def main() -> int:
    checks = list(CHECKS)
    if shutil.which("npx"):
        checks.append(("buf lint", ["npx", "--yes", "@bufbuild/buf@1.75.0", "lint"]))
    else:
        print("buf lint skipped: npx not found (CI has it)")
    failed = []
    for name, command in checks:
        print(f"--> {name}", flush=True)
        if subprocess.call(command, cwd=ROOT) != 0:
            failed.append(name)
    if failed:
        print("failed:", ", ".join(failed))
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
