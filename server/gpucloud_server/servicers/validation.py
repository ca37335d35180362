"""Bounds on what a caller may ask of the scheduler; every violation names its field."""

from __future__ import annotations

import math
from collections.abc import Sequence

from gpucloud.v1 import chat_pb2, scheduler_pb2
from gpucloud_server.errors import InvalidArgument

ROLES = frozenset({"system", "user", "assistant", "tool", "developer", "function"})
MAX_MODEL_ID = 256
MAX_MESSAGES = 2048
MAX_PROMPT_CHARS = 4 * 1024 * 1024
MAX_TOKENS = 1 << 20
MAX_CHOICES = 16
MAX_STOP = 4
MAX_STOP_CHARS = 256


class FieldError(InvalidArgument):
    """An invalid request field; `param` is its OpenAI name."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message, param=param)


def check_chat_request(request: scheduler_pb2.CreateChatCompletionRequest) -> None:
    if not request.model or len(request.model) > MAX_MODEL_ID:
        raise FieldError("model", f"'model' must be 1 to {MAX_MODEL_ID} characters")
    _check_messages(request.messages)
    _check_sampling(request.sampling)
    if request.HasField("priority") and not 1 <= request.priority <= 10:
        raise FieldError("priority", "'priority' must be between 1 and 10")


def _check_messages(messages: Sequence[chat_pb2.ChatMessage]) -> None:
    if not messages:
        raise FieldError("messages", "'messages' must hold at least one message")
    if len(messages) > MAX_MESSAGES:
        raise FieldError("messages", f"'messages' holds more than {MAX_MESSAGES} messages")
    total = 0
    for i, message in enumerate(messages):
        if message.role not in ROLES:
            raise FieldError(f"messages[{i}].role", f"unknown role '{message.role[:32]}'")
        total += len(message.content)
    if total > MAX_PROMPT_CHARS:
        raise FieldError("messages", "the messages are too long")


def _check_sampling(sampling: chat_pb2.SamplingParams) -> None:
    if sampling.HasField("temperature") and not 0.0 <= sampling.temperature <= 2.0:
        raise FieldError("temperature", "'temperature' must be between 0 and 2")
    if sampling.HasField("top_p") and not (0.0 <= sampling.top_p <= 1.0):
        raise FieldError("top_p", "'top_p' must be between 0 and 1")
    for name in ("temperature", "top_p"):
        if sampling.HasField(name) and math.isnan(getattr(sampling, name)):
            raise FieldError(name, f"'{name}' must be a number")
    if sampling.max_tokens > MAX_TOKENS:
        raise FieldError("max_tokens", f"'max_tokens' must be at most {MAX_TOKENS}")
    if sampling.n > MAX_CHOICES:
        raise FieldError("n", f"'n' must be between 1 and {MAX_CHOICES}")
    if len(sampling.stop) > MAX_STOP or any(
        not s or len(s) > MAX_STOP_CHARS for s in sampling.stop
    ):
        raise FieldError("stop", f"'stop' takes up to {MAX_STOP} non-empty sequences")
