"""Generates the Python code for proto/gpucloud/v1 and checks it for drift.

`python scripts/gen_protos.py` rewrites the committed files;
`python scripts/gen_protos.py --check` regenerates into a temporary directory
and exits 1 when anything differs from what is committed.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
PACKAGE = Path("gpucloud") / "v1"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")


def generate(out: Path) -> None:
    """Runs protoc with the Python, gRPC and mypy plugins into `out`."""
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / PACKAGE).glob("*.proto"))
    include = str(Path(protoc.__file__).parent / "_proto")
    bindir = Path(sys.executable).parent
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--plugin=protoc-gen-mypy={bindir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bindir / 'protoc-gen-mypy_grpc'}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")


def generated_files(directory: Path) -> dict[str, Path]:
    return {p.name: p for p in directory.iterdir() if p.name.endswith(GENERATED_SUFFIXES)}


def check() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        fresh = generated_files(Path(tmp) / PACKAGE)
        committed = generated_files(PROTO_ROOT / PACKAGE)
        stale = sorted(
            name
            for name in fresh.keys() | committed.keys()
            if name not in fresh
            or name not in committed
            or not filecmp.cmp(fresh[name], committed[name], shallow=False)
        )
    if stale:
        print("generated code is stale; run scripts/gen_protos.py:", *stale, sep="\n  ")
        return 1
    return 0


def write() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        target = PROTO_ROOT / PACKAGE
        for old in generated_files(target).values():
            old.unlink()
        for name, path in generated_files(Path(tmp) / PACKAGE).items():
            shutil.copyfile(path, target / name)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail when committed code is stale")
    return check() if parser.parse_args().check else write()


if __name__ == "__main__":
    sys.exit(main())
