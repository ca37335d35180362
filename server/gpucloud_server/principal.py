"""Who is calling and what they may do: the seam between the scheduler and identity.

The identity side (keys, sessions, limits, usage) implements these protocols;
the scheduler servicer and the monitor servicer only depend on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from gpucloud_server.errors import PermissionDenied


@dataclass(frozen=True, slots=True)
class KeyPrincipal:
    """An authenticated API key, as cached by the core."""

    key_id: str
    user_id: str
    name: str
    priority: int
    allowed_models: frozenset[str]
    requests_per_minute: int  # 0 = unlimited
    tokens_per_minute: int  # 0 = unlimited

    def check_model(self, model: str) -> None:
        if self.allowed_models and model not in self.allowed_models:
            raise PermissionDenied(
                f"this API key may not use model '{model}'",
                code="model_not_allowed",
                param="model",
            )


@dataclass(frozen=True, slots=True)
class UserPrincipal:
    """A dashboard user authenticated by a JWT."""

    user_id: str
    email: str
    is_admin: bool


class KeyAuthority(Protocol):
    async def authenticate(self, secret: str) -> KeyPrincipal:
        """Returns the key's principal; raises Unauthenticated for a bad, expired or revoked key."""


class SessionAuthority(Protocol):
    def verify(self, token: str) -> UserPrincipal:
        """Returns the JWT's user; raises Unauthenticated for a bad or expired token."""


@dataclass(frozen=True, slots=True)
class LimitWindow:
    """One limit's state, as OpenAI's x-ratelimit-* headers carry it."""

    limit: int
    remaining: int
    reset_s: float


@dataclass(frozen=True, slots=True)
class LimitDecision:
    requests: LimitWindow | None
    tokens: LimitWindow | None

    def headers(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for kind, window in (("requests", self.requests), ("tokens", self.tokens)):
            if window is not None:
                out[f"x-ratelimit-limit-{kind}"] = str(window.limit)
                out[f"x-ratelimit-remaining-{kind}"] = str(window.remaining)
                out[f"x-ratelimit-reset-{kind}"] = f"{window.reset_s:.3f}s"
        return out


class RateLimiter(Protocol):
    async def admit(self, key: KeyPrincipal) -> LimitDecision:
        """Counts one request; raises ResourceExhausted (with retry_after_s and the
        x-ratelimit-* headers as metadata) when a limit is reached."""

    async def peek(self, key: KeyPrincipal) -> LimitDecision:
        """The key's windows now, counting nothing: the headers of answers that are not
        admitted requests (the model list, a request refused before admission)."""

    async def charge_tokens(self, key: KeyPrincipal, tokens: int) -> None:
        """Counts tokens a finished task used against the key's tokens/min."""


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """One finished task, as billed. `task_id` is unique."""

    task_id: str
    key_id: str
    user_id: str
    model: str
    worker_id: str
    gpu: str
    prompt_tokens: int
    completion_tokens: int
    queue_wait_ms: int
    time_to_first_token_ms: int | None
    total_ms: int
    outcome: str  # "ok" | "error" | "cancelled"
    error_code: str
    created_at: float  # unix seconds
    finished_at: float


class UsageSink(Protocol):
    def record(self, record: UsageRecord) -> None:
        """Queues the record for a batched write; never blocks the caller."""
