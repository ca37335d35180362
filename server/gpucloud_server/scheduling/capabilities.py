"""What workers can do with a model, what a request needs, and the admission check
between them: a request no worker serving its model can honour is refused before it
is queued, naming the field at fault."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from gpucloud_server.errors import InvalidArgument


class TaskKind(Enum):
    CHAT = "chat"
    COMPLETION = "completion"
    EMBEDDING = "embedding"


@dataclass(frozen=True, slots=True)
class Capabilities:
    """One worker's declaration for one model (worker.proto ModelCapabilities)."""

    embeddings: bool = False
    tools: bool = False
    json_schema: bool = False
    logprobs: bool = False
    max_context_tokens: int = 0  # 0: unknown
    image_input: bool = False
    audio_input: bool = False
    file_input: bool = False
    embedding_dimensions: int = 0  # 0: unknown
    variable_dimensions: bool = False
    completions: bool = False


CHAT_MODEL = Capabilities()  # what a worker that declares nothing offers


@dataclass(frozen=True, slots=True)
class Needs:
    """What one request needs of a worker. Each optional feature is named by the request
    field that asks for it (empty: not asked), so a refusal can name that field."""

    kind: TaskKind
    tools: str = ""
    json_schema: str = ""
    logprobs: str = ""
    image_input: str = ""
    audio_input: str = ""
    file_input: str = ""
    dimensions: int | None = None
    prompt_tokens: int = 0  # the core's estimate (gpucloud_common.tokens)
    max_tokens: int = 0  # asked for; 0: the backend's default


_FEATURES = (
    ("tools", "tools"),
    ("json_schema", "structured output (response_format)"),
    ("logprobs", "logprobs"),
    ("image_input", "image input"),
    ("audio_input", "audio input"),
    ("file_input", "file input"),
)


def check(model: str, needs: Needs, offers: Sequence[Capabilities]) -> None:
    """Raises InvalidArgument unless one of `offers` (the workers serving `model`) can
    honour `needs`; with no offers, the scheduler's own refusal (no worker) applies."""
    if not offers:
        return
    _check_kind(model, needs, offers)
    able = list(offers)
    for attr, label in _FEATURES:
        param = getattr(needs, attr)
        if param:
            able = [c for c in able if getattr(c, attr)]
            if not able:
                raise InvalidArgument(
                    f"the model '{model}' does not support {label}",
                    param=param,
                    code="unsupported_parameter",
                )
    if needs.dimensions is not None:
        _check_dimensions(model, needs.dimensions, able)
    _check_context(model, needs, able)


def _check_kind(model: str, needs: Needs, offers: Sequence[Capabilities]) -> None:
    embedding_model = all(c.embeddings for c in offers)
    if needs.kind is TaskKind.EMBEDDING and not any(c.embeddings for c in offers):
        raise InvalidArgument(
            f"the model '{model}' is not an embedding model",
            param="model",
            code="model_not_supported",
        )
    if needs.kind is not TaskKind.EMBEDDING and embedding_model:
        raise InvalidArgument(
            f"the model '{model}' is an embedding model; use /v1/embeddings",
            param="model",
            code="model_not_supported",
        )
    if needs.kind is TaskKind.COMPLETION and not any(c.completions for c in offers):
        raise InvalidArgument(
            f"the model '{model}' does not serve text completions; use /v1/chat/completions",
            param="model",
            code="model_not_supported",
        )


def _check_dimensions(model: str, dimensions: int, offers: Sequence[Capabilities]) -> None:
    def fits(c: Capabilities) -> bool:
        native = c.embedding_dimensions
        if dimensions == native:
            return True
        return c.variable_dimensions and (native == 0 or dimensions <= native)

    if not any(fits(c) for c in offers if c.embeddings):
        native = max((c.embedding_dimensions for c in offers), default=0)
        allowed = (
            f"at most {native}"
            if any(c.variable_dimensions for c in offers)
            else f"only its own ({native})"
        )
        raise InvalidArgument(
            f"the model '{model}' takes {allowed} for 'dimensions', not {dimensions}",
            param="dimensions",
            code="invalid_value",
        )


def _check_context(model: str, needs: Needs, offers: Sequence[Capabilities]) -> None:
    limits = [c.max_context_tokens for c in offers]
    if not limits or any(limit == 0 for limit in limits):
        return  # some worker does not say: it judges for itself
    limit = max(limits)
    asked = needs.prompt_tokens + needs.max_tokens
    if asked <= limit:
        return
    where = "input" if needs.kind is TaskKind.EMBEDDING else "messages"
    if needs.kind is TaskKind.COMPLETION:
        where = "prompt"
    output = f" plus {needs.max_tokens} requested completion tokens" if needs.max_tokens else ""
    raise InvalidArgument(
        f"This model's maximum context length is {limit} tokens. However, you requested "
        f"about {asked} tokens ({needs.prompt_tokens} in the {where}{output}). Please "
        f"reduce the length of the {where} or the completion.",
        param=where,
        code="context_length_exceeded",
    )
