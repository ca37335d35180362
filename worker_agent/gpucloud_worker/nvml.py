"""The machine's real GPUs through NVML (nvidia-ml-py): specs once, samples per heartbeat."""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import ModuleType
from typing import Any, TypeVar

from gpucloud_worker.backend import GpuSample, GpuSpec

log = logging.getLogger(__name__)

T = TypeVar("T")

_MIB = 1024 * 1024


def _import_pynvml() -> ModuleType | None:
    try:
        import pynvml
    except ImportError:
        return None
    module: ModuleType = pynvml
    return module


class Nvml:
    """An open NVML session, or the empty "no GPU" one when NVML is absent.

    Absence (no nvidia-ml-py, no driver library, no device) is not an error: the
    worker then reports no GPUs rather than inventing figures, and says so once.
    """

    def __init__(self, pynvml: ModuleType | None, handles: tuple[Any, ...]) -> None:
        self._pynvml = pynvml
        self._handles = handles
        self._specs: tuple[GpuSpec, ...] = ()

    @classmethod
    def open(cls) -> Nvml:
        """Initialises NVML; never raises."""
        pynvml = _import_pynvml()
        if pynvml is None:
            log.warning("no GPU: nvidia-ml-py is not installed; reporting no GPUs")
            return cls(None, ())
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as error:
            log.warning("no GPU: NVML is not available (%s); reporting no GPUs", error)
            return cls(None, ())
        try:
            count = int(pynvml.nvmlDeviceGetCount())
            handles = tuple(pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count))
        except pynvml.NVMLError as error:
            log.warning("no GPU: NVML could not list devices (%s); reporting no GPUs", error)
            pynvml.nvmlShutdown()
            return cls(None, ())
        if not handles:
            log.warning("no GPU: NVML found no device; reporting no GPUs")
            pynvml.nvmlShutdown()
            return cls(None, ())
        session = cls(pynvml, handles)
        if not session._read_specs():
            log.warning("no GPU: no device told NVML what it is; reporting no GPUs")
            session.close()
            return cls(None, ())
        specs = session.specs()
        log.info("NVML: %d GPU(s): %s", len(specs), ", ".join(spec.name for spec in specs))
        return session

    @property
    def available(self) -> bool:
        return self._pynvml is not None

    def specs(self) -> tuple[GpuSpec, ...]:
        """Name, memory and (derived) memory bandwidth of each GPU, as read at open."""
        return self._specs

    def sample(self) -> tuple[GpuSample, ...]:
        """What each GPU is doing now; a GPU that fails to answer is left out and logged."""
        if self._pynvml is None:
            return ()
        samples: list[GpuSample] = []
        for index, handle in enumerate(self._handles):
            try:
                samples.append(self._sample(index, handle))
            except self._pynvml.NVMLError as error:
                log.warning("NVML: GPU %d did not answer: %s", index, error)
        return tuple(samples)

    def close(self) -> None:
        if self._pynvml is not None:
            pynvml, self._pynvml, self._handles, self._specs = self._pynvml, None, (), ()
            pynvml.nvmlShutdown()

    def _read_specs(self) -> bool:
        """Reads each GPU's spec once; whether any GPU answered.

        A GPU that cannot say what it is (lost, in a bad state) is left out so that
        the others are still reported; the ones kept are numbered from 0 so that
        sample indexes keep pointing into specs.
        """
        nv = self._pynvml
        assert nv is not None
        kept: list[tuple[Any, GpuSpec]] = []
        for index, handle in enumerate(self._handles):
            try:
                kept.append((handle, self._spec(handle)))
            except nv.NVMLError as error:
                log.warning(
                    "NVML: GPU %d did not describe itself (%s); leaving it out", index, error
                )
        self._handles = tuple(handle for handle, _ in kept)
        self._specs = tuple(spec for _, spec in kept)
        return bool(kept)

    def _spec(self, handle: Any) -> GpuSpec:
        nv = self._pynvml
        assert nv is not None
        name = nv.nvmlDeviceGetName(handle)
        memory = nv.nvmlDeviceGetMemoryInfo(handle)
        return GpuSpec(
            name=name.decode() if isinstance(name, bytes) else str(name),
            memory_total_bytes=int(memory.total),
            memory_bandwidth_gbps=self._bandwidth_gbps(handle),
        )

    def _bandwidth_gbps(self, handle: Any) -> float:
        """Peak memory bandwidth from the bus width and the maximum memory clock.

        bytes/s = bus width / 8 * memory clock * 2 (double data rate); this gives the
        datasheet figure for HBM and GDDR alike (H100 SXM: 5120 bit, 2619 MHz -> 3352 GB/s;
        RTX 4090: 384 bit, 10501 MHz -> 1008 GB/s). 0.0 when NVML does not say.
        """
        nv = self._pynvml
        assert nv is not None
        bus_bits = self._optional(lambda: nv.nvmlDeviceGetMemoryBusWidth(handle))
        clock_mhz = self._optional(lambda: nv.nvmlDeviceGetMaxClockInfo(handle, nv.NVML_CLOCK_MEM))
        if not bus_bits or not clock_mhz:
            return 0.0
        return round(int(bus_bits) / 8 * int(clock_mhz) * 2 / 1000, 1)

    def _sample(self, index: int, handle: Any) -> GpuSample:
        nv = self._pynvml
        assert nv is not None
        memory = nv.nvmlDeviceGetMemoryInfo(handle)
        # MIG instances and some boards do not report utilisation; GpuSample has no
        # "unknown" for it, and 0 keeps the sample's other readings.
        utilization = self._optional(lambda: nv.nvmlDeviceGetUtilizationRates(handle))
        temperature = self._optional(
            lambda: nv.nvmlDeviceGetTemperature(handle, nv.NVML_TEMPERATURE_GPU)
        )
        milliwatts = self._optional(lambda: nv.nvmlDeviceGetPowerUsage(handle))
        return GpuSample(
            index=index,
            utilization_percent=0.0 if utilization is None else float(utilization.gpu),
            memory_used_bytes=int(memory.used),
            temperature_celsius=None if temperature is None else float(temperature),
            power_watts=None if milliwatts is None else int(milliwatts) / 1000,
        )

    def _optional(self, read: Callable[[], T]) -> T | None:
        """A reading some GPUs do not support (utilisation under MIG, temperature, power)."""
        assert self._pynvml is not None
        try:
            return read()
        except self._pynvml.NVMLError:
            return None


def describe(samples: tuple[GpuSample, ...], specs: tuple[GpuSpec, ...]) -> str:
    """One readable line per GPU, for logs and notes."""
    lines = []
    for sample in samples:
        spec = specs[sample.index] if sample.index < len(specs) else None
        total = f"/{spec.memory_total_bytes // _MIB} MiB" if spec else " MiB"
        lines.append(
            f"GPU {sample.index} {spec.name if spec else '?'}: "
            f"util {sample.utilization_percent:.0f}%, "
            f"mem {sample.memory_used_bytes // _MIB}{total}, "
            f"temp {sample.temperature_celsius} C, power {sample.power_watts} W"
        )
    return "\n".join(lines) if lines else "no GPU"
