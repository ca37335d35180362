"""The worker agent's settings, and `gpucloud worker`'s options they are built from in main()."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from gpucloud_common.settings import option
from gpucloud_sim.cost import PRECISIONS

DISCOVER = "discover"


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


def model_ids(value: str) -> tuple[str, ...] | None:
    """`--models`: the ids to offer, or None for the backend's own choice (`discover`)."""
    if value.strip() == DISCOVER:
        return None
    ids = tuple(m.strip() for m in value.split(",") if m.strip())
    if not ids:
        raise argparse.ArgumentTypeError(f"no model id in {value!r}")
    return ids


SIM_OPTIONS = ("gpu", "gpu_count", "precision", "speed", "seed")
OPENAI_OPTIONS = ("upstream", "upstream_key", "slots")


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """What `gpucloud worker` is told: the agent's settings and its backend's."""

    core_address: str = option(
        "127.0.0.1:50051", flag="--core", env="GPUCLOUD_CORE", help="the core's gRPC HOST:PORT"
    )
    join_token: str | None = option(
        None,
        flag="--token",
        env="GPUCLOUD_JOIN_TOKEN",
        help="the cluster's join token",
        default_help="required",
    )
    tls: bool = option(
        False, flag="--tls", help="dial the core over TLS, verified against the system's roots"
    )
    tls_ca: Path | None = option(
        None,
        flag="--tls-ca",
        env="GPUCLOUD_TLS_CA",
        parse=Path,
        help="CA or self-signed certificate (PEM) to trust for the core; implies --tls",
    )
    worker_id: str | None = option(
        None,
        flag="--worker-id",
        env="GPUCLOUD_WORKER_ID",
        help="stable id; a reconnecting worker keeps it",
        default_help="NAME-GPU (sim) or NAME-openai",
    )
    name: str | None = option(
        None,
        flag="--name",
        env="GPUCLOUD_WORKER_NAME",
        help="name shown in the dashboard",
        default_help="this host's name",
    )
    backend: str = option(
        "sim", flag="--backend", choices=("sim", "openai"), help="what generates the tokens"
    )
    heartbeat_interval_s: float = option(
        5.0,
        flag="--heartbeat",
        help="seconds between heartbeats (shorter when the core expects beats more often)",
    )
    drain_timeout_s: float = option(
        300.0,
        flag="--drain-timeout",
        help="seconds the first SIGTERM lets running tasks finish; a second stops them at once",
    )
    models: tuple[str, ...] | None = option(
        None,
        flag="--models",
        parse=model_ids,
        help=f"comma-separated model ids, or {DISCOVER!r}: "
        "sim: what fits; openai: what the upstream lists at /models",
        default_help=DISCOVER,
    )
    gpu: str = option("a100", flag="--gpu", help="simulated GPU: a100, h100, rtx4090, a6000")
    gpu_count: int = option(1, flag="--gpu-count", help="simulated GPUs in the box")
    precision: str = option(
        "bf16",
        flag="--precision",
        choices=PRECISIONS,
        help="weights and matmuls the simulated GPUs serve in; "
        "fp8 needs FP8 tensor cores (h100, rtx4090), not a100 or a6000",
    )
    speed: float = option(1.0, flag="--speed", help="x real time; 0: no delay")
    seed: int = option(0, flag="--seed", help="seed of the generated text")
    upstream: str | None = option(
        None, flag="--upstream", help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1"
    )
    upstream_key: str | None = option(
        None, flag="--upstream-key", env="GPUCLOUD_UPSTREAM_KEY", help="the upstream's API key"
    )
    slots: int = option(8, flag="--slots", help="concurrent requests to the upstream")

    def settings(self, hostname: str) -> WorkerSettings:
        """The agent's settings; raises ValueError for a missing token or CA file."""
        if not self.join_token:
            raise ValueError("a join token is needed (--token or GPUCLOUD_JOIN_TOKEN)")
        if self.tls_ca is not None and not self.tls_ca.is_file():
            raise ValueError(f"--tls-ca {self.tls_ca}: no such file")
        name = self.name or hostname
        kind = self.gpu if self.backend == "sim" else self.backend
        return WorkerSettings(
            core_address=self.core_address,
            join_token=self.join_token,
            worker_id=self.worker_id or f"{name}-{kind}",
            name=name,
            heartbeat_interval_s=self.heartbeat_interval_s,
            drain_timeout_s=self.drain_timeout_s,
            tls=self.tls,
            tls_ca=self.tls_ca,
        )
