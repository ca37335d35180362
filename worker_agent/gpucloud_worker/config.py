"""The worker agent's settings: one frozen object, read once in main()."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    core_address: str
    join_token: str
    worker_id: str
    name: str
    heartbeat_interval_s: float = 5.0
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    drain_timeout_s: float = 300.0
