"""The GPU simulator: a calibrated catalog, one engine timeline per worker, the profiler.

A library without I/O: the worker's `sim` backend drives it in real time, the profiler
and the planner on a virtual clock.
"""

from __future__ import annotations

from gpucloud_sim.engine import GpuEngine
from gpucloud_sim.fleet import Workload, simulate_fleet
from gpucloud_sim.gpus import GPUS, GpuModel, find_gpu
from gpucloud_sim.models import MODELS, ModelSpec, find_model
from gpucloud_sim.profile import profile
from gpucloud_sim.results import ProfileResult, RequestResult, Summary
from gpucloud_sim.sched import EngineConfig

__all__ = [
    "GPUS",
    "MODELS",
    "EngineConfig",
    "GpuEngine",
    "GpuModel",
    "ModelSpec",
    "ProfileResult",
    "RequestResult",
    "Summary",
    "Workload",
    "find_gpu",
    "find_model",
    "profile",
    "simulate_fleet",
]
