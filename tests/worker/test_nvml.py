"""NVML: real GPU figures where present, a clean "no GPU" report where not."""

from __future__ import annotations

import logging
import sys
from types import SimpleNamespace
from typing import Any

import pynvml
import pytest

from gpucloud_worker.backend import GpuSample, GpuSpec
from gpucloud_worker.nvml import Nvml, describe

GIB = 1024**3


def _raise(error: type[Exception]) -> Any:
    def fail(*_args: object) -> None:
        raise error()

    return fail


def test_library_not_found_reports_no_gpu_and_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(pynvml, "nvmlInit", _raise(pynvml.NVMLError_LibraryNotFound))
    with caplog.at_level(logging.WARNING, logger="gpucloud_worker.nvml"):
        nvml = Nvml.open()
    assert not nvml.available
    assert nvml.specs() == ()
    assert nvml.sample() == ()
    assert "no GPU" in caplog.text
    nvml.close()


def test_missing_nvidia_ml_py_reports_no_gpu(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` fail
    with caplog.at_level(logging.WARNING, logger="gpucloud_worker.nvml"):
        nvml = Nvml.open()
    assert (nvml.available, nvml.specs(), nvml.sample()) == (False, (), ())
    assert "nvidia-ml-py is not installed" in caplog.text


def test_driver_without_devices_reports_no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    shutdowns: list[bool] = []
    monkeypatch.setattr(pynvml, "nvmlInit", lambda: None)
    monkeypatch.setattr(pynvml, "nvmlShutdown", lambda: shutdowns.append(True))
    monkeypatch.setattr(pynvml, "nvmlDeviceGetCount", lambda: 0)
    nvml = Nvml.open()
    assert (nvml.available, nvml.specs(), nvml.sample()) == (False, (), ())
    assert shutdowns == [True]


def _fake_h100(
    monkeypatch: pytest.MonkeyPatch, *, temperature_supported: bool, count: int = 1
) -> None:
    """NVML answering as `count` H100 SXMs would (figures from an H100's `nvidia-smi -q`)."""
    memory = SimpleNamespace(total=80 * GIB, used=12 * GIB, free=68 * GIB)
    functions: dict[str, Any] = {
        "nvmlInit": lambda: None,
        "nvmlShutdown": lambda: None,
        "nvmlDeviceGetCount": lambda: count,
        "nvmlDeviceGetHandleByIndex": lambda index: f"handle-{index}",
        "nvmlDeviceGetName": lambda handle: "NVIDIA H100 80GB HBM3",
        "nvmlDeviceGetMemoryInfo": lambda handle: memory,
        "nvmlDeviceGetMemoryBusWidth": lambda handle: 5120,
        "nvmlDeviceGetMaxClockInfo": lambda handle, clock: 2619,
        "nvmlDeviceGetUtilizationRates": lambda handle: SimpleNamespace(gpu=87, memory=40),
        "nvmlDeviceGetPowerUsage": lambda handle: 412_345,  # milliwatts
        "nvmlDeviceGetTemperature": (
            (lambda handle, sensor: 61)
            if temperature_supported
            else _raise(pynvml.NVMLError_NotSupported)
        ),
    }
    for name, function in functions.items():
        monkeypatch.setattr(pynvml, name, function)


def test_gpu_figures_are_read_from_nvml_in_our_units(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_h100(monkeypatch, temperature_supported=True)
    nvml = Nvml.open()
    assert nvml.available
    # 5120-bit bus at 2619 MHz, double data rate: the H100 SXM's datasheet 3.35 TB/s.
    assert nvml.specs() == (
        GpuSpec(
            name="NVIDIA H100 80GB HBM3", memory_total_bytes=80 * GIB, memory_bandwidth_gbps=3352.3
        ),
    )
    assert nvml.sample() == (
        GpuSample(
            index=0,
            utilization_percent=87.0,
            memory_used_bytes=12 * GIB,
            temperature_celsius=61.0,
            power_watts=412.345,
        ),
    )
    assert "GPU 0 NVIDIA H100 80GB HBM3: util 87%" in describe(nvml.sample(), nvml.specs())
    nvml.close()
    assert nvml.sample() == ()


def test_unsupported_readings_are_none_not_invented(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_h100(monkeypatch, temperature_supported=False)
    (sample,) = Nvml.open().sample()
    assert sample.temperature_celsius is None
    assert sample.power_watts == 412.345


def test_unsupported_utilisation_keeps_the_rest_of_the_sample(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """MIG instances answer NotSupported for utilisation; memory and power still count."""
    _fake_h100(monkeypatch, temperature_supported=True)
    unsupported = _raise(pynvml.NVMLError_NotSupported)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetUtilizationRates", unsupported)
    (sample,) = Nvml.open().sample()
    assert (sample.utilization_percent, sample.memory_used_bytes) == (0.0, 12 * GIB)
    assert sample.power_watts == 412.345


def test_a_gpu_that_cannot_describe_itself_at_start_is_left_out(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _fake_h100(monkeypatch, temperature_supported=True, count=2)

    def name(handle: str) -> str:
        if handle == "handle-0":
            raise pynvml.NVMLError_GpuIsLost()
        return "NVIDIA H100 80GB HBM3"

    monkeypatch.setattr(pynvml, "nvmlDeviceGetName", name)
    with caplog.at_level(logging.WARNING, logger="gpucloud_worker.nvml"):
        nvml = Nvml.open()
    assert [spec.name for spec in nvml.specs()] == ["NVIDIA H100 80GB HBM3"]
    # Numbered among the GPUs reported, so a sample's index points at its spec.
    assert [sample.index for sample in nvml.sample()] == [0]
    assert "GPU 0 did not describe itself" in caplog.text
    nvml.close()


def test_no_gpu_describing_itself_at_start_reports_no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    shutdowns: list[bool] = []
    _fake_h100(monkeypatch, temperature_supported=True)
    monkeypatch.setattr(pynvml, "nvmlShutdown", lambda: shutdowns.append(True))
    monkeypatch.setattr(pynvml, "nvmlDeviceGetMemoryInfo", _raise(pynvml.NVMLError_Unknown))
    nvml = Nvml.open()
    assert (nvml.available, nvml.specs(), nvml.sample()) == (False, (), ())
    assert shutdowns == [True]


def test_a_gpu_that_stops_answering_is_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_h100(monkeypatch, temperature_supported=True)
    nvml = Nvml.open()
    monkeypatch.setattr(pynvml, "nvmlDeviceGetMemoryInfo", _raise(pynvml.NVMLError_GpuIsLost))
    assert nvml.sample() == ()


def test_this_machine_reports_its_real_gpus_or_none() -> None:
    """No mocks: the CI machines have no NVIDIA GPU, a GPU box reports real figures."""
    nvml = Nvml.open()
    try:
        specs, samples = nvml.specs(), nvml.sample()
        if not nvml.available:
            assert (specs, samples) == ((), ())
            return
        assert specs
        assert len(samples) == len(specs)
        assert all(spec.memory_total_bytes > GIB for spec in specs)
        for sample, spec in zip(samples, specs, strict=True):
            assert 0 <= sample.utilization_percent <= 100
            assert 0 < sample.memory_used_bytes <= spec.memory_total_bytes
    finally:
        nvml.close()
