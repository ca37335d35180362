"""The sim against published measurements: CALIBRATION.md's table, row by row."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpucloud_sim import GPUS, MODELS, calibration, cost
from gpucloud_sim.profile import profile

TABLE = Path(calibration.__file__).with_name("CALIBRATION.md")


@pytest.mark.parametrize(
    "measurement",
    calibration.MEASUREMENTS,
    ids=[f"{m.metric}-{m.gpu.key}-{m.prompt_tokens}" for m in calibration.MEASUREMENTS],
)
def test_the_sim_reproduces_the_published_figure(measurement: calibration.Measurement) -> None:
    simulated = measurement.simulate()
    assert measurement.within(simulated), (measurement.setting, simulated)


def test_calibration_md_holds_the_current_table() -> None:
    assert calibration.table() in TABLE.read_text(), (
        "regenerate CALIBRATION.md's table with "
        "python -c 'from gpucloud_sim.calibration import table; print(table())'"
    )


@pytest.mark.parametrize("key", sorted(GPUS))
def test_every_gpu_carries_a_sourced_calibration(key: str) -> None:
    figures = GPUS[key].calibration
    assert 0.6 <= figures.decode_bandwidth_efficiency <= 0.87
    assert 0.0 < figures.prefill_compute_efficiency <= 1.0
    assert figures.step_overhead_s > 0 and figures.prefill_overhead_s > 0
    assert figures.source


@pytest.mark.parametrize("key", sorted(GPUS))
def test_batch_one_decode_reads_the_weights_at_the_calibrated_bandwidth(key: str) -> None:
    gpu = GPUS[key]
    for model in MODELS:
        deployment = cost.Deployment(model, gpu, gpu_count=2 if model.parameters > 4e10 else 1)
        weights_s = deployment.weight_bytes / deployment.bandwidth
        tpot = cost.decode_seconds(deployment, 1, 0)
        assert weights_s / 0.87 < tpot < weights_s / 0.55 + 2e-3


def test_short_prompts_are_dominated_by_fixed_overhead() -> None:
    ttft = [profile("a100", "Llama-2-7b-chat-hf", n, 1, requests=1).summary.ttft_ms_p50
            for n in (16, 128, 2048)]  # fmt: skip
    assert ttft[1] < 2 * ttft[0]  # 8x the tokens, far from 8x the time
    assert ttft[2] > 5 * ttft[1]
