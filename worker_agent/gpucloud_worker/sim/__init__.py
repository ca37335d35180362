"""The `sim` backend: a worker backend on the simulator's GPU timeline (gpucloud_sim)."""

from __future__ import annotations

from gpucloud_worker.sim.backend import SimBackend

__all__ = ["SimBackend"]
