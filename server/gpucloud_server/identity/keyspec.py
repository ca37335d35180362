"""What a new API key may ask for, and the bounds it is held to.

Admins may set anything within the bounds below. Members may not raise a key
above the server's defaults: priority at most DEFAULT_PRIORITY (5), and
requests/tokens per minute at most the server's defaults (a default of 0 means
unlimited, so then members may ask for any value). Asking for more is refused
with PermissionDenied rather than clamped, so a caller never gets less than it
thinks it has.
"""

from __future__ import annotations

from dataclasses import dataclass

from gpucloud_server.errors import InvalidArgument, PermissionDenied

MAX_NAME = 100
MAX_MODELS = 64
MAX_MODEL_NAME = 200
# The moving window keeps one timestamp per admitted request, so bound it.
MAX_REQUESTS_PER_MINUTE = 10_000
MAX_TOKENS_PER_MINUTE = 1_000_000_000
MAX_LIFETIME_S = 10 * 365 * 86400
DEFAULT_PRIORITY = 5


@dataclass(frozen=True, slots=True)
class KeyDefaults:
    requests_per_minute: int
    tokens_per_minute: int


@dataclass(frozen=True, slots=True)
class KeySpec:
    """A key request; zeros mean the server default, as in the API."""

    name: str
    requests_per_minute: int = 0
    tokens_per_minute: int = 0
    priority: int = 0
    expires_at: float | None = None  # unix seconds
    allowed_models: tuple[str, ...] = ()


def _check_name(name: str) -> str:
    clean = name.strip()
    if not 1 <= len(clean) <= MAX_NAME or not clean.isprintable():
        raise InvalidArgument(f"name must be 1 to {MAX_NAME} printable characters", param="name")
    return clean


def _check_models(models: tuple[str, ...]) -> tuple[str, ...]:
    if len(models) > MAX_MODELS:
        raise InvalidArgument(f"at most {MAX_MODELS} allowed models", param="allowedModels")
    seen: dict[str, None] = {}
    for model in models:
        if not 1 <= len(model) <= MAX_MODEL_NAME or not model.isprintable():
            raise InvalidArgument(
                f"model names must be 1 to {MAX_MODEL_NAME} characters", param="allowedModels"
            )
        seen[model] = None
    return tuple(seen)


def _check_rate(value: int, default: int, ceiling: int, what: str, param: str) -> int:
    if not 0 <= value <= ceiling:
        raise InvalidArgument(f"{what} must be 0 (the default) to {ceiling}", param=param)
    return value or default


def _check_member_limits(spec: KeySpec, defaults: KeyDefaults) -> None:
    """Members take the defaults or less; `spec` has its zeros filled in already."""
    if spec.priority > DEFAULT_PRIORITY:
        raise PermissionDenied(
            f"only admins may set priority above {DEFAULT_PRIORITY}", param="priority"
        )
    for value, default, what, param in (
        (
            spec.requests_per_minute,
            defaults.requests_per_minute,
            "rate_limit_per_minute",
            "rateLimitPerMinute",
        ),
        (
            spec.tokens_per_minute,
            defaults.tokens_per_minute,
            "tokens_per_minute",
            "tokensPerMinute",
        ),
    ):
        if default and value > default:
            raise PermissionDenied(f"only admins may set {what} above {default}", param=param)


def validate_spec(spec: KeySpec, defaults: KeyDefaults, now: float, *, is_admin: bool) -> KeySpec:
    """The spec with defaults filled in. Raises InvalidArgument when out of bounds, and
    PermissionDenied when a member asks for more than the defaults (see the module doc)."""
    if not 0 <= spec.priority <= 10:
        raise InvalidArgument("priority must be 1 to 10 (0 means 5)", param="priority")
    expires_at = spec.expires_at
    if expires_at is not None and not now < expires_at <= now + MAX_LIFETIME_S:
        raise InvalidArgument(
            "expires_at must be in the future, at most 10 years away", param="expiresAt"
        )
    clean = KeySpec(
        name=_check_name(spec.name),
        requests_per_minute=_check_rate(
            spec.requests_per_minute,
            defaults.requests_per_minute,
            MAX_REQUESTS_PER_MINUTE,
            "rate_limit_per_minute",
            "rateLimitPerMinute",
        ),
        tokens_per_minute=_check_rate(
            spec.tokens_per_minute,
            defaults.tokens_per_minute,
            MAX_TOKENS_PER_MINUTE,
            "tokens_per_minute",
            "tokensPerMinute",
        ),
        priority=spec.priority or DEFAULT_PRIORITY,
        expires_at=expires_at,
        allowed_models=_check_models(spec.allowed_models),
    )
    if not is_admin:
        _check_member_limits(clean, defaults)
    return clean
