"""Cluster totals for live views, derived from the scheduler's state."""

from __future__ import annotations

from dataclasses import dataclass

from gpucloud_server.scheduling.registry import WorkerState
from gpucloud_server.scheduling.scheduler import Scheduler

WINDOW_S = 10.0


@dataclass(frozen=True, slots=True)
class ClusterStats:
    workers_online: int
    workers_total: int
    queue_depth: int
    running: int
    requests_per_second: float
    tokens_per_second: float
    gpu_utilization_percent: float
    recent_errors: int


def cluster_stats(scheduler: Scheduler) -> ClusterStats:
    now = scheduler.clock.monotonic()
    workers = list(scheduler.registry)
    online = [w for w in workers if w.state is not WorkerState.OFFLINE]
    recent = [
        (t, tokens, ok) for t, tokens, ok in reversed(scheduler.finished) if now - t <= WINDOW_S
    ]
    readings = [r.utilization_percent for w in online for r in w.readings]
    return ClusterStats(
        workers_online=sum(1 for w in online if w.state is WorkerState.ONLINE),
        workers_total=len(workers),
        queue_depth=len(scheduler.queue),
        running=scheduler.running,
        requests_per_second=len(recent) / WINDOW_S,
        tokens_per_second=sum(tokens for _, tokens, _ in recent) / WINDOW_S,
        gpu_utilization_percent=sum(readings) / len(readings) if readings else 0.0,
        recent_errors=sum(1 for _, _, ok in recent if not ok),
    )
