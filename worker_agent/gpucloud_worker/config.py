"""The worker agent's settings: one frozen object, read once in main()."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


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
    # Dial the core over TLS, verified against the system's roots (or tls_ca's).
    tls: bool = False
    # A CA or self-signed certificate (PEM) to trust for the core; implies TLS.
    tls_ca: Path | None = None
