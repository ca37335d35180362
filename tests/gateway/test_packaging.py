"""The wheel: `pip install gpucloud` must bring the protos, every package and the dashboard."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT)],
        check=True,
        timeout=300,
    )
    [built] = out.glob("gpucloud-*.whl")
    return built


def test_the_wheel_holds_every_package_and_the_dashboard(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in (
        "gpucloud/v1/scheduler_pb2.py",
        "gpucloud/v1/scheduler.proto",
        "gpucloud_launcher/cli.py",
        "gpucloud_common/logs.py",
        "gpucloud_sim/engine.py",
        "gpucloud_server/identity/migrations/env.py",
        "gpucloud_gateway/app.py",
        "gpucloud_worker/agent.py",
        "gpucloud_gateway/web/index.html",
        "gpucloud_gateway/web/app/main.js",
    ):
        assert path in names, path
    assert not any(name.startswith("tests/") for name in names)


def test_an_installed_wheel_serves_its_own_dashboard(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    # Only the unpacked wheel on the path first, so the checkout's web/ cannot answer.
    probe = "from gpucloud_gateway.app import find_web_dir; print(find_web_dir(None))"
    found = subprocess.run(
        [sys.executable, "-c", probe],
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(found) == site / "gpucloud_gateway" / "web"
