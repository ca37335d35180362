"""`gpucloud up --sim-precision`: fp8 where the fleet's GPUs have FP8 tensor cores, bf16 on
the others, and a usage error when none of them has."""

from __future__ import annotations

import pytest

from gpucloud_launcher.up import Cloud, banner, parse, worker_precision


def test_the_fleet_serves_bf16_by_default() -> None:
    settings = parse([], env={})
    assert settings.sim_precision == "bf16"
    assert {worker_precision(kind, settings.sim_precision) for kind in settings.gpus} == {"bf16"}


def test_fp8_applies_to_the_kinds_with_fp8_cores_only() -> None:
    settings = parse(["--sim-precision", "fp8"], env={})
    served = {kind: worker_precision(kind, settings.sim_precision) for kind in settings.gpus}
    assert served == {"a100": "bf16", "h100": "fp8", "rtx4090": "fp8", "a6000": "bf16"}


def test_the_banner_tells_which_workers_serve_fp8() -> None:
    text = banner(Cloud(parse(["--gpus", "a100,h100", "--sim-precision", "fp8"], env={})))
    assert "NVIDIA A100 80GB SXM (bf16)" in text
    assert "NVIDIA H100 80GB SXM (fp8)" in text


def test_the_precision_comes_from_the_environment_and_the_flag_wins() -> None:
    env = {"GPUCLOUD_SIM_PRECISION": "fp8"}
    assert parse(["--gpus", "h100"], env=env).sim_precision == "fp8"
    assert parse(["--gpus", "h100", "--sim-precision", "bf16"], env=env).sim_precision == "bf16"


def test_fp8_on_a_fleet_without_fp8_cores_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse(["--gpus", "a100,a6000", "--sim-precision", "fp8"], env={})
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "--sim-precision fp8: no GPU of the fleet (a100, a6000) has FP8 tensor cores" in err


def test_an_unknown_precision_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse(["--sim-precision", "int4"], env={})
    assert exited.value.code == 2
    assert "'int4' is not one of bf16, fp8" in capsys.readouterr().err
