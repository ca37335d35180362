"""The `gpucloud` command itself: its version and its usage."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version

import pytest

from gpucloud_launcher.cli import main


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_prints_the_installed_distribution_version(
    flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([flag]) == 0
    assert capsys.readouterr().out == f"gpucloud {version('gpucloud')}\n"


def test_the_installed_command_answers_version() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gpucloud_launcher.cli", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == f"gpucloud {version('gpucloud')}"


def test_usage_lists_the_version_flag_and_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    usage = capsys.readouterr().out
    assert "-V, --version" in usage
    for command in ("up", "server", "gateway", "worker"):
        assert f"\n  {command} " in usage


def test_an_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["launch"]) == 2
    assert "unknown command 'launch'" in capsys.readouterr().err
