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


# What an upstream may do with its chat models, as --capabilities names them (the fields
# of ModelCapabilities). Content parts are not among them: the backend interface carries
# message text only, so a worker that declared image input would drop the images.
# All four are the default, as vLLM, SGLang and llama.cpp's llama-server do them all.
CHAT_FEATURES = ("tools", "json_schema", "logprobs", "completions")
_CONTENT_PARTS = ("image_input", "audio_input", "file_input")


def chat_features(value: str) -> tuple[str, ...]:
    """`--capabilities`: the features the upstream's chat models have ("" or none: none)."""
    names = tuple(dict.fromkeys(n.strip() for n in value.split(",") if n.strip()))
    if names == ("none",):
        return ()
    parts = [n for n in names if n in _CONTENT_PARTS]
    if parts:
        raise argparse.ArgumentTypeError(
            f"{', '.join(parts)}: the worker relays message text only, not content parts"
        )
    unknown = [n for n in names if n not in CHAT_FEATURES]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown capability {', '.join(unknown)}: choose from "
            f"{', '.join(CHAT_FEATURES)}, or none"
        )
    return names


@dataclass(frozen=True, slots=True)
class EmbeddingModel:
    """An upstream model that embeds, and its vector length (0: unknown)."""

    id: str
    dimensions: int = 0

    def __str__(self) -> str:
        return f"{self.id}:{self.dimensions}" if self.dimensions else self.id


def embedding_models(value: str) -> tuple[EmbeddingModel, ...]:
    """`--embedding-models`: ID[:DIMENSIONS],... The last `:` part is the length only
    when it is a number, so Ollama's `nomic-embed-text:latest` is an id."""
    models = []
    for item in (i.strip() for i in value.split(",")):
        if not item:
            continue
        head, _, tail = item.rpartition(":")
        if head and tail.isdigit():
            if int(tail) < 1:
                raise argparse.ArgumentTypeError(f"{item!r}: dimensions must be at least 1")
            models.append(EmbeddingModel(head, int(tail)))
        else:
            models.append(EmbeddingModel(item))
    return tuple(models)


def context_tokens(value: str) -> int:
    """`--max-context`: a count of tokens, 0 for unknown."""
    if not value.strip().isdigit():
        raise argparse.ArgumentTypeError(f"{value!r} is not a count of tokens")
    return int(value)


SIM_OPTIONS = ("gpu", "gpu_count", "precision", "speed", "seed")
OPENAI_OPTIONS = (
    "upstream", "upstream_key", "slots", "capabilities", "embedding_models", "max_context",
)  # fmt: skip


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
    capabilities: tuple[str, ...] = option(
        CHAT_FEATURES,
        flag="--capabilities",
        env="GPUCLOUD_CAPABILITIES",
        parse=chat_features,
        help="what the upstream's chat models do, comma-separated, or none; "
        "the core refuses requests that need anything else",
    )
    embedding_models: tuple[EmbeddingModel, ...] = option(
        (),
        flag="--embedding-models",
        env="GPUCLOUD_EMBEDDING_MODELS",
        parse=embedding_models,
        help="the upstream's embedding models, comma-separated ID[:DIMENSIONS], e.g. bge-small:384",
        default_help="none",
    )
    max_context: int = option(
        0,
        flag="--max-context",
        env="GPUCLOUD_MAX_CONTEXT",
        parse=context_tokens,
        help="tokens (prompt + completion) each model takes; 0: as the upstream's /models "
        "says (vLLM's max_model_len, llama.cpp's n_ctx_train), or unknown",
    )

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
