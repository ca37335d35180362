"""The `sim` backend: simulated GPUs with a roofline timing model and deterministic text."""

from __future__ import annotations

from gpucloud_worker.sim.backend import SimBackend
from gpucloud_worker.sim.gpus import GPUS, GpuModel, find_gpu
from gpucloud_worker.sim.models import MODELS, ModelSpec, find_model

__all__ = ["GPUS", "MODELS", "GpuModel", "ModelSpec", "SimBackend", "find_gpu", "find_model"]
