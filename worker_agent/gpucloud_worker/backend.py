"""The small interface every worker backend implements (sim, openai)."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol


@dataclass(frozen=True, slots=True)
class GpuSpec:
    """A GPU as its datasheet describes it."""

    name: str
    memory_total_bytes: int
    memory_bandwidth_gbps: float = 0.0
    bf16_tflops: float = 0.0


@dataclass(frozen=True, slots=True)
class GpuSample:
    """What one GPU is doing now."""

    index: int
    utilization_percent: float
    memory_used_bytes: int
    temperature_celsius: float | None = None
    power_watts: float | None = None


@dataclass(frozen=True, slots=True)
class ModelOffer:
    """A model the backend serves."""

    id: str
    owned_by: str


@dataclass(frozen=True, slots=True)
class WorkerDescription:
    """What a backend tells the core when the worker registers."""

    backend: str
    gpus: tuple[GpuSpec, ...]
    models: tuple[ModelOffer, ...]
    slots: int
    speed: float


@dataclass(frozen=True, slots=True)
class Health:
    """Heartbeat payload: GPU samples and whether the backend can serve."""

    gpus: tuple[GpuSample, ...]
    healthy: bool = True
    message: str = ""


@dataclass(frozen=True, slots=True)
class Message:
    role: str
    content: str


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """One task as a backend sees it."""

    task_id: str
    model: str
    messages: tuple[Message, ...]
    max_tokens: int
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    n: int = 1


@dataclass(frozen=True, slots=True)
class Chunk:
    """Generated text of one choice; `tokens` is how many tokens it holds.

    A task's first chunk carries `prompt_tokens`, so a task cancelled mid-stream
    is still billed for its prompt.
    """

    index: int
    text: str
    tokens: int
    prompt_tokens: int = 0


class FinishReason(Enum):
    STOP = "stop"
    LENGTH = "length"


@dataclass(frozen=True, slots=True)
class Finish:
    """The last event of a generation.

    `cached_tokens` is how many of the prompt tokens the backend served from its
    prefix cache (OpenAI's usage.prompt_tokens_details.cached_tokens); 0 when none
    or unknown.
    """

    reasons: tuple[FinishReason, ...]
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0


class ErrorKind(Enum):
    INVALID_REQUEST = "invalid_request"
    RETRYABLE = "retryable"
    INTERNAL = "internal"


@dataclass(slots=True)
class BackendError(Exception):
    """A generation failed; `kind` tells the core whether to retry elsewhere."""

    kind: ErrorKind
    message: str
    details: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.message


class Backend(Protocol):
    """Runs generations for a worker agent.

    `generate` yields Chunks then exactly one Finish, or raises BackendError.
    The agent cancels a generation by closing the iterator (aclose), which must
    stop the work on the device promptly.
    """

    async def start(self) -> WorkerDescription:
        """Prepares the backend (loads models, probes the upstream) and describes it."""

    def generate(self, request: GenerationRequest) -> AsyncGenerator[Chunk | Finish, None]:
        """Runs one generation."""

    async def health(self) -> Health:
        """Samples the GPUs and checks that the backend can serve."""

    async def close(self) -> None:
        """Releases what start() acquired."""
