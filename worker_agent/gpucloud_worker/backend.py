"""The small interface every worker backend implements (sim, openai)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol


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
class Capabilities:
    """What the backend can do with one model (the contract's ModelCapabilities): the
    core admits only requests that some worker serving the model can honour."""

    embeddings: bool = False  # an embedding model: `embed`, never `generate`
    tools: bool = False
    json_schema: bool = False  # response_format json_object and json_schema
    logprobs: bool = False
    max_context_tokens: int = 0  # 0: unknown
    image_input: bool = False
    audio_input: bool = False
    file_input: bool = False
    embedding_dimensions: int = 0
    variable_dimensions: bool = False  # may return shorter vectors (Matryoshka)
    completions: bool = False  # legacy text completions


@dataclass(frozen=True, slots=True)
class ModelOffer:
    """A model the backend serves."""

    id: str
    owned_by: str
    capabilities: Capabilities = Capabilities()


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
class ToolCall:
    """A function call an assistant made; `arguments` is JSON text."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message. Content parts other than text are not here: the core admits
    them only for models whose capabilities take them."""

    role: str
    content: str
    name: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str = ""
    refusal: str = ""  # an assistant's earlier refusal


@dataclass(frozen=True, slots=True)
class Tool:
    """A function the model may call; `parameters` is its JSON Schema ({}: none)."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(default_factory=dict)
    strict: bool | None = None


@dataclass(frozen=True, slots=True)
class ToolChoice:
    """ "none", "auto", "required", or "function" (then `function` names the tool)."""

    mode: str
    function: str = ""


@dataclass(frozen=True, slots=True)
class ResponseFormat:
    """ "text", "json_object", or "json_schema" (then `schema` is the JSON Schema)."""

    type: str
    name: str = ""
    schema: Mapping[str, Any] | None = None
    strict: bool | None = None


@dataclass(frozen=True, slots=True)
class CompletionPrompt:
    """A legacy text completion: each prompt gets `n` choices, choice p*n+j being prompt
    p's jth; `echo` starts each choice with its prompt."""

    prompts: tuple[str, ...]
    echo: bool = False
    suffix: str = ""


NO_TOOLS = ToolChoice("none")


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """One chat or text completion as a backend sees it: `completion` is set for a text
    completion (then `messages` is empty). `tool_choice` is resolved: "auto" when tools
    were given without one, "none" without tools."""

    task_id: str
    model: str
    messages: tuple[Message, ...]
    max_tokens: int
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    n: int = 1
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice = NO_TOOLS
    parallel_tool_calls: bool = True
    response_format: ResponseFormat | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: Mapping[int, float] = field(default_factory=dict)
    logprobs: bool = False
    top_logprobs: int = 0
    completion: CompletionPrompt | None = None


@dataclass(frozen=True, slots=True)
class EmbeddingRequest:
    """Inputs to embed: text, or token ids; `dimensions` None means the model's own."""

    task_id: str
    model: str
    inputs: tuple[str | tuple[int, ...], ...]
    dimensions: int | None = None


@dataclass(frozen=True, slots=True)
class Embeddings:
    """One unit vector per input, in input order, and the inputs' tokens."""

    vectors: tuple[tuple[float, ...], ...]
    prompt_tokens: int


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of a tool call: its first piece carries `id` and `name`, later pieces of
    the same `index` argument fragments."""

    index: int
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass(frozen=True, slots=True)
class TopLogprob:
    token: str
    logprob: float


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """One output token's log probability and the most likely alternatives there."""

    token: str
    logprob: float
    top: tuple[TopLogprob, ...] = ()


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
    tool_calls: tuple[ToolCallDelta, ...] = ()
    logprobs: tuple[TokenLogprob, ...] = ()  # with request.logprobs: one per token of text


class FinishReason(Enum):
    STOP = "stop"
    LENGTH = "length"
    TOOL_CALLS = "tool_calls"
    CONTENT_FILTER = "content_filter"


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

    `generate` yields Chunks then exactly one Finish, or raises BackendError; `embed`
    serves the models whose capabilities say `embeddings`.
    The agent cancels a generation by closing the iterator (aclose), which must
    stop the work on the device promptly.
    """

    async def start(self) -> WorkerDescription:
        """Prepares the backend (loads models, probes the upstream) and describes it."""

    def generate(self, request: GenerationRequest) -> AsyncGenerator[Chunk | Finish, None]:
        """Runs one generation."""

    async def embed(self, request: EmbeddingRequest) -> Embeddings:
        """Embeds the inputs with an embedding model, or raises BackendError."""

    async def health(self) -> Health:
        """Samples the GPUs and checks that the backend can serve."""

    async def close(self) -> None:
        """Releases what start() acquired."""
