"""`gpucloud worker --precision`: the sim backend serves in BF16 or FP8, and FP8 on a GPU
without FP8 tensor cores is refused at startup with the reason."""

from __future__ import annotations

import argparse

import pytest

from gpucloud_worker.main import build_backend, parser
from gpucloud_worker.sim import SimBackend


def args(*argv: str) -> argparse.Namespace:
    return parser().parse_args(["--token", "join-me", *argv])


def sim(*argv: str) -> SimBackend:
    backend = build_backend(args(*argv))
    assert isinstance(backend, SimBackend)
    return backend


def test_the_sim_backend_serves_bf16_unless_told() -> None:
    assert sim("--gpu", "h100").precision == "bf16"


@pytest.mark.parametrize("gpu", ["h100", "rtx4090"])
async def test_fp8_on_a_gpu_with_fp8_cores_decodes_faster(gpu: str) -> None:
    bf16, fp8 = sim("--gpu", gpu), sim("--gpu", gpu, "--precision", "fp8")
    assert fp8.precision == "fp8"
    assert fp8.engine.deployments[fp8.models[0].id].precision == "fp8"
    # Half the weight bytes to stream per token: a higher batch-1 decode rate.
    assert (await fp8.start()).speed > (await bf16.start()).speed


@pytest.mark.parametrize("gpu", ["a100", "a6000"])
def test_fp8_on_a_gpu_without_fp8_cores_is_a_startup_error(gpu: str) -> None:
    with pytest.raises(SystemExit) as exited:
        build_backend(args("--gpu", gpu, "--precision", "fp8"))
    message = str(exited.value.code)
    assert message.startswith("gpucloud worker: ")
    assert "has no FP8 tensor cores" in message


def test_an_unknown_precision_is_a_usage_error_naming_the_choices(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        args("--precision", "fp4")
    assert exited.value.code == 2
    assert "argument --precision: 'fp4' is not one of bf16, fp8" in capsys.readouterr().err


def test_help_lists_the_precision_among_the_sim_options() -> None:
    text = " ".join(parser().format_help().split())
    sim_section = text[text.index("sim backend:") : text.index("openai backend:")]
    assert "--precision {bf16,fp8} weights and matmuls" in sim_section
