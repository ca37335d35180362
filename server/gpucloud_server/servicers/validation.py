"""Bounds on what a caller may ask of the scheduler; every violation names its field."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence

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
MAX_TOOLS = 128
MAX_SCHEMA_CHARS = 256 * 1024
MAX_TOOL_CALLS = 128
MAX_LOGIT_BIAS = 300
MAX_TOP_LOGPROBS = 20
MAX_COMPLETION_TOP_LOGPROBS = 5  # OpenAI's integer `logprobs` on /v1/completions
MAX_METADATA = 16
MAX_PROMPTS = 128
MAX_EMBEDDING_INPUTS = 2048
MAX_EMBEDDING_DIMENSIONS = 65536
MAX_TOKEN_ID = (1 << 31) - 1
FUNCTION_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


class FieldError(InvalidArgument):
    """An invalid request field; `param` is its OpenAI name."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message, param=param)


def check_chat_request(request: scheduler_pb2.CreateChatCompletionRequest) -> None:
    _check_common(request)
    _check_messages(request.messages)
    _check_sampling(request.sampling)
    _check_tools(request)
    _check_response_format(request.response_format)
    _check_metadata(request.metadata)


def check_completion_request(request: scheduler_pb2.CreateCompletionRequest) -> None:
    _check_common(request)
    prompts = request.prompt.prompts
    if not prompts or len(prompts) > MAX_PROMPTS:
        raise FieldError("prompt", f"'prompt' takes 1 to {MAX_PROMPTS} prompts")
    if sum(len(p) for p in prompts) + len(request.prompt.suffix) > MAX_PROMPT_CHARS:
        raise FieldError("prompt", "the prompt is too long")
    if request.sampling.top_logprobs > MAX_COMPLETION_TOP_LOGPROBS:
        raise FieldError(
            "logprobs", f"'logprobs' must be between 0 and {MAX_COMPLETION_TOP_LOGPROBS}"
        )
    _check_sampling(request.sampling)
    if len(prompts) * max(1, request.sampling.n) > MAX_CHOICES:
        raise FieldError("n", f"prompts times 'n' must be at most {MAX_CHOICES}")


def check_embedding_request(request: scheduler_pb2.CreateEmbeddingRequest) -> None:
    _check_common(request)
    inputs = request.inputs
    if not inputs or len(inputs) > MAX_EMBEDDING_INPUTS:
        raise FieldError("input", f"'input' takes 1 to {MAX_EMBEDDING_INPUTS} inputs")
    total = 0
    for i, item in enumerate(inputs):
        if bool(item.text) == bool(item.token_ids):
            raise FieldError(f"input[{i}]", f"'input[{i}]' must be non-empty text or token ids")
        if any(t > MAX_TOKEN_ID for t in item.token_ids):
            raise FieldError(f"input[{i}]", f"'input[{i}]' holds a token id out of range")
        total += len(item.text) + 4 * len(item.token_ids)
    if total > MAX_PROMPT_CHARS:
        raise FieldError("input", "the input is too long")
    if request.HasField("dimensions") and not 1 <= request.dimensions <= MAX_EMBEDDING_DIMENSIONS:
        raise FieldError(
            "dimensions", f"'dimensions' must be between 1 and {MAX_EMBEDDING_DIMENSIONS}"
        )


def _check_common(
    request: scheduler_pb2.CreateChatCompletionRequest
    | scheduler_pb2.CreateCompletionRequest
    | scheduler_pb2.CreateEmbeddingRequest,
) -> None:
    if not request.model or len(request.model) > MAX_MODEL_ID:
        raise FieldError("model", f"'model' must be 1 to {MAX_MODEL_ID} characters")
    if request.HasField("priority") and not 1 <= request.priority <= 10:
        raise FieldError("priority", "'priority' must be between 1 and 10")
    if len(request.user) > 256:
        raise FieldError("user", "'user' must be at most 256 characters")


def _check_messages(messages: Sequence[chat_pb2.ChatMessage]) -> None:
    if not messages:
        raise FieldError("messages", "'messages' must hold at least one message")
    if len(messages) > MAX_MESSAGES:
        raise FieldError("messages", f"'messages' holds more than {MAX_MESSAGES} messages")
    total = 0
    for i, message in enumerate(messages):
        if message.role not in ROLES:
            raise FieldError(f"messages[{i}].role", f"unknown role '{message.role[:32]}'")
        if message.tool_calls and message.role != "assistant":
            raise FieldError(
                f"messages[{i}].tool_calls", "only assistant messages may hold 'tool_calls'"
            )
        if len(message.tool_calls) > MAX_TOOL_CALLS:
            raise FieldError(f"messages[{i}].tool_calls", "too many tool calls")
        for j, call in enumerate(message.tool_calls):
            where = f"messages[{i}].tool_calls[{j}]"
            if not call.id:
                raise FieldError(f"{where}.id", f"'{where}.id' must not be empty")
            _check_function_name(call.name, f"{where}.function.name")
            total += len(call.arguments)
        if message.role == "tool" and not message.tool_call_id:
            raise FieldError(
                f"messages[{i}].tool_call_id", "a 'tool' message must name its 'tool_call_id'"
            )
        for part in message.parts:
            total += len(part.image_url.url) + len(part.input_audio.data) + len(part.file.file_data)
        total += len(message.content) + len(message.refusal)
    if total > MAX_PROMPT_CHARS:
        raise FieldError("messages", "the messages are too long")


def _check_function_name(name: str, param: str) -> None:
    if not FUNCTION_NAME.fullmatch(name):
        raise FieldError(param, f"'{param}' must be 1 to 64 letters, digits, '_' or '-'")


def _json_object(text: str, param: str) -> None:
    """`text` must be a JSON object (a JSON Schema)."""
    if len(text) > MAX_SCHEMA_CHARS:
        raise FieldError(param, f"'{param}' must be at most {MAX_SCHEMA_CHARS} characters")
    try:
        value = json.loads(text)
    except ValueError:
        raise FieldError(param, f"'{param}' must be a JSON object") from None
    if not isinstance(value, dict):
        raise FieldError(param, f"'{param}' must be a JSON object")


def _check_tools(request: scheduler_pb2.CreateChatCompletionRequest) -> None:
    tools = request.tools
    if len(tools) > MAX_TOOLS:
        raise FieldError("tools", f"'tools' takes at most {MAX_TOOLS} functions")
    names: set[str] = set()
    for i, tool in enumerate(tools):
        _check_function_name(tool.name, f"tools[{i}].function.name")
        if tool.name in names:
            raise FieldError(f"tools[{i}].function.name", f"two tools are named '{tool.name}'")
        names.add(tool.name)
        if tool.parameters_json:
            _json_object(tool.parameters_json, f"tools[{i}].function.parameters")
    if not request.HasField("tool_choice"):
        return
    mode = request.tool_choice.mode
    if mode != chat_pb2.TOOL_CHOICE_MODE_NONE and not tools:
        raise FieldError("tool_choice", "'tool_choice' is only allowed when 'tools' are given")
    if mode == chat_pb2.TOOL_CHOICE_MODE_FUNCTION and request.tool_choice.function not in names:
        raise FieldError(
            "tool_choice",
            f"'tool_choice' names the function '{request.tool_choice.function[:64]}', "
            "which is not among the tools",
        )


def _check_response_format(response_format: chat_pb2.ResponseFormat) -> None:
    if response_format.type != chat_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA:
        return
    if not FUNCTION_NAME.fullmatch(response_format.name):
        raise FieldError(
            "response_format.json_schema.name",
            "'response_format.json_schema.name' must be 1 to 64 letters, digits, '_' or '-'",
        )
    _json_object(response_format.schema_json, "response_format.json_schema.schema")


def _check_metadata(metadata: Mapping[str, str]) -> None:
    if len(metadata) > MAX_METADATA:
        raise FieldError("metadata", f"'metadata' takes at most {MAX_METADATA} pairs")
    for key, value in metadata.items():
        if not key or len(key) > 64 or len(value) > 512:
            raise FieldError(
                "metadata", "'metadata' keys are 1 to 64 characters, values at most 512"
            )


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
    penalties = (
        ("presence_penalty", sampling.HasField("presence_penalty"), sampling.presence_penalty),
        ("frequency_penalty", sampling.HasField("frequency_penalty"), sampling.frequency_penalty),
    )
    for name, given, value in penalties:
        if given and (math.isnan(value) or not -2.0 <= value <= 2.0):
            raise FieldError(name, f"'{name}' must be between -2 and 2")
    if len(sampling.logit_bias) > MAX_LOGIT_BIAS:
        raise FieldError("logit_bias", f"'logit_bias' takes at most {MAX_LOGIT_BIAS} tokens")
    for token, bias in sampling.logit_bias.items():
        if not 0 <= token <= MAX_TOKEN_ID:
            raise FieldError("logit_bias", f"'logit_bias' names an invalid token id {token}")
        if math.isnan(bias) or not -100.0 <= bias <= 100.0:
            raise FieldError("logit_bias", "'logit_bias' values must be between -100 and 100")
    if sampling.HasField("top_logprobs"):
        if not sampling.logprobs:
            raise FieldError("top_logprobs", "'top_logprobs' needs 'logprobs' set to true")
        if sampling.top_logprobs > MAX_TOP_LOGPROBS:
            raise FieldError(
                "top_logprobs", f"'top_logprobs' must be between 0 and {MAX_TOP_LOGPROBS}"
            )
    if len(sampling.stop) > MAX_STOP or any(
        not s or len(s) > MAX_STOP_CHARS for s in sampling.stop
    ):
        raise FieldError("stop", f"'stop' takes up to {MAX_STOP} non-empty sequences")
