"""The `sim` backend: simulated GPUs on a calibrated engine timeline, and its profiler."""

from __future__ import annotations

from gpucloud_worker.sim.backend import SimBackend, SimFinish
from gpucloud_worker.sim.engine import GpuEngine
from gpucloud_worker.sim.fleet import Workload, simulate_fleet
from gpucloud_worker.sim.gpus import GPUS, GpuModel, find_gpu
from gpucloud_worker.sim.models import MODELS, ModelSpec, find_model
from gpucloud_worker.sim.profile import profile
from gpucloud_worker.sim.results import ProfileResult, RequestResult, Summary
from gpucloud_worker.sim.sched import EngineConfig

__all__ = [
    "GPUS",
    "MODELS",
    "EngineConfig",
    "GpuEngine",
    "GpuModel",
    "ModelSpec",
    "ProfileResult",
    "RequestResult",
    "SimBackend",
    "SimFinish",
    "Summary",
    "Workload",
    "find_gpu",
    "find_model",
    "profile",
    "simulate_fleet",
]
