"""The Responses API request without I/O: body shape -> CreateChatCompletionRequest.

As for chat, the gateway checks the JSON's shape and leaves the rules on values
to the core, and every documented parameter is honoured or refused with a 400
naming it. Features that need stored responses or hosted tools are refused,
unless the value asks for nothing (null, or the default). The core names a
refused field in chat terms (`max_tokens`, `tools[0].function.name`);
`ResponsesParams.renamed` puts it back in this API's (`max_output_tokens`,
`tools[0].name`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, cast

import orjson

from gpucloud.v1 import chat_pb2, scheduler_pb2
from gpucloud_gateway import openai_params as p
from gpucloud_gateway import responses_objects as objects
from gpucloud_gateway.errors import ApiError, invalid
from gpucloud_gateway.fields import (
    Body,
    Boolean,
    Field,
    Flag,
    Integer,
    Items,
    Object,
    Refused,
    Schema,
    String,
    Tagged,
)
from gpucloud_gateway.responses_input import Conversation, Input
from gpucloud_gateway.validation import UINT32_MAX, strings, type_error

_LOGPROBS = "message.output_text.logprobs"
# Include values naming output of items this server never produces: honoured by having none.
_INCLUDABLE = frozenset(
    {
        _LOGPROBS,
        "reasoning.encrypted_content",
        "file_search_call.results",
        "web_search_call.results",
        "web_search_call.action.sources",
        "message.input_image.image_url",
        "computer_call_output.output.image_url",
        "code_interpreter_call.outputs",
    }
)
_NOT_STORED = "gpucloud stores no responses"
# The core's chat param -> this API's; indexed params by the patterns below.
_RENAMED = {
    "max_tokens": "max_output_tokens",
    "messages": "input",
    "response_format": "text.format",
    "logprobs": "include",
}
_MESSAGE_PARAM = re.compile(r"messages\[(\d+)\](.*)")
_TOOL_PARAM = re.compile(r"tools\[(\d+)\]\.function(.*)")
_FORMAT_PARAM = re.compile(r"response_format\.json_schema(.*)")
_MODES: dict[int, objects.ToolChoice] = {
    chat_pb2.TOOL_CHOICE_MODE_NONE: "none",
    chat_pb2.TOOL_CHOICE_MODE_AUTO: "auto",
    chat_pb2.TOOL_CHOICE_MODE_REQUIRED: "required",
}


@dataclass(frozen=True, slots=True)
class ResponsesParams:
    """A Responses request of the right shape: the chat request, and what a Response echoes."""

    request: scheduler_pb2.CreateChatCompletionRequest
    stream: bool
    obfuscate: bool
    echo: objects.RequestEcho
    conversation: Conversation

    def param(self, chat_param: str) -> str:
        """This API's name of a param the core named in chat terms."""
        if match := _MESSAGE_PARAM.fullmatch(chat_param):
            return self.conversation.param(int(match[1]), match[2])
        if match := _TOOL_PARAM.fullmatch(chat_param):
            return f"tools[{match[1]}]{match[2]}"
        if match := _FORMAT_PARAM.fullmatch(chat_param):
            return f"text.format{match[1]}"
        return _RENAMED.get(chat_param, chat_param)

    def renamed(self, error: ApiError) -> ApiError:
        """`error` naming its field this API's way, in its `param` and its message."""
        if error.param:
            name = self.param(error.param)
            error.message = error.message.replace(f"'{error.param}'", f"'{name}'")
            error.param = name
        return error


class ToolChoice(Field):
    """`tool_choice`: "none", "auto", "required" or `{type: "function", name}`."""

    def __init__(self, name: str, description: str) -> None:
        super().__init__(name, description)
        function = [String("name", "The function's name.", required=True, param=f"{name}.name")]
        self._named = Tagged(
            name,
            "The function the model must call.",
            {"function": function},
            required=True,
            into=lambda _, values: p.named_tool(values["name"]),
        )

    def check(self, value: Any) -> chat_pb2.ToolChoice:
        if isinstance(value, str):
            return p.tool_choice(value, self.param)
        if not isinstance(value, dict):
            raise type_error(self.param, "a string or an object", value)
        choice: chat_pb2.ToolChoice = self._named.check(value)
        return choice

    def schema(self) -> Schema:
        modes = {"type": "string", "enum": list(p.TOOL_CHOICE_MODES)}
        return {
            "description": self.description,
            "anyOf": [modes, self._named.schema(), {"type": "null"}],
        }


class Include(Field):
    """`include`: logprobs add to the output; the other values name items never made here."""

    json_type = {"type": "array", "items": {"type": "string", "enum": sorted(_INCLUDABLE)}}
    absent = False

    def check(self, value: Any) -> bool:
        for i, name in enumerate(strings(value, self.param)):
            if name not in _INCLUDABLE:
                where = f"{self.param}[{i}]"
                raise invalid(
                    f"Invalid '{where}': {name[:64]!r} is unknown.", where, "invalid_value"
                )
        return _LOGPROBS in value


class Reasoning(Field):
    """`reasoning`: only members that ask for nothing (null, or effort "none")."""

    json_type = {"type": "object"}

    def check(self, value: Any) -> None:
        if not isinstance(value, dict):
            raise type_error(self.param, "an object", value)
        for key, item in value.items():
            if item is not None and not (key == "effort" and item == "none"):
                where = f"{self.param}.{key[:32]}"
                raise invalid(
                    f"The '{where}' parameter is not supported: the models do not reason.",
                    where,
                    "unsupported_parameter",
                )


def _text_format(kind: str, values: dict[str, Any]) -> chat_pb2.ResponseFormat:
    if kind == "json_schema":
        return p.json_schema_format(values)
    return chat_pb2.ResponseFormat(type=p.FORMAT_TYPES[kind])


TEXT = Object(
    "text",
    "The output's format.",
    [
        Tagged(
            "format",
            "Free text, any JSON object, or JSON following a schema.",
            {"text": [], "json_object": [], "json_schema": p.json_schema_fields("text.format")},
            param="text.format",
            into=_text_format,
        ),
        Refused(
            "verbosity",
            "How long the answer is.",
            "no backend takes it",
            param="text.verbosity",
            accepted=["medium"],
        ),
    ],
)
TOOLS = Items(
    "tools",
    'Functions the model may call (`{type: "function", name, …}`); no built-in tools.',
    Tagged(
        "tools",
        "A function tool.",
        {"function": p.function_fields("tools[]")},
        param="tools[]",
        into=lambda _, values: p.function_tool(values),
    ),
)
STREAM_OPTIONS = Object(
    "stream_options",
    "Options of a streamed answer; only with `stream: true`.",
    [
        Boolean(
            "include_obfuscation",
            "Pad each delta event with random characters in an `obfuscation` field, so that "
            "event sizes do not tell the text (off unless asked for).",
            param="stream_options.include_obfuscation",
        )
    ],
)

# The create-response body in the API reference's order, `model` and `input` first.
RESPONSES_REQUEST = Body(
    "CreateResponseRequest",
    "A Responses API request, run as a chat completion: OpenAI's schema, every documented "
    "parameter honoured or refused with a 400 naming it. Other members are ignored.",
    [
        String("model", "The model to answer with.", required=True, example="sim-small"),
        Input("input", "Text, or input items.", required=True),
        Refused(
            "background",
            "Run in the background.",
            "responses run while the client waits",
            accepted=[False],
        ),
        Refused("conversation", "A stored conversation.", _NOT_STORED),
        Include("include", f"Extra output: {_LOGPROBS!r} adds token logprobs."),
        String("instructions", "A system message put before the input."),
        Integer("max_output_tokens", "Most tokens to generate.", 1, UINT32_MAX),
        Integer("max_tool_calls", "Most built-in tool calls; there are none here.", 0, UINT32_MAX),
        p.METADATA,
        Flag("parallel_tool_calls", "Whether the model may call several tools at once."),
        Refused("previous_response_id", "The response this one continues.", _NOT_STORED),
        Refused("prompt", "A stored prompt template.", "gpucloud stores no prompts"),
        String("prompt_cache_key", "A caching hint; the scheduler routes by prefix anyway."),
        Refused(
            "prompt_cache_retention",
            "How long cached prefixes live.",
            "workers keep them in memory only",
            accepted=["in_memory"],
        ),
        Reasoning("reasoning", 'Reasoning options: only null members or `effort: "none"`.'),
        String("safety_identifier", "An end-user id; stands for `user` when that is absent."),
        Refused(
            "service_tier",
            "The processing tier.",
            "gpucloud has one tier, its queue priorities aside",
            accepted=["auto", "default"],
        ),
        Flag("store", "Accepted (true is the default), but gpucloud stores no responses."),
        Boolean("stream", "Stream the response as server-sent events."),
        STREAM_OPTIONS,
        p.TEMPERATURE,
        TEXT,
        ToolChoice("tool_choice", "Whether and which function the model must call."),
        TOOLS,
        Integer("top_logprobs", "With logprobs included: alternatives per token.", 0, UINT32_MAX),
        p.TOP_P,
        Refused(
            "truncation",
            "Dropping input that does not fit.",
            "input too long for the model is refused",
            accepted=["disabled"],
        ),
        p.USER,
        p.PRIORITY,
    ],
    example={
        "model": "sim-small",
        "instructions": "You are a helpful assistant.",
        "input": "Write a haiku about GPUs.",
        "max_output_tokens": 64,
        "temperature": 0.7,
    },
)


def _sampling(values: dict[str, Any]) -> chat_pb2.SamplingParams:
    sampling = chat_pb2.SamplingParams(max_tokens=values["max_output_tokens"] or 0)
    if (temperature := values["temperature"]) is not None:
        sampling.temperature = temperature
    if (top_p := values["top_p"]) is not None:
        sampling.top_p = top_p
    if values["include"]:  # logprobs asked for; top_logprobs alone adds nothing
        sampling.logprobs = True
        if (top := values["top_logprobs"]) is not None:
            sampling.top_logprobs = top
    return sampling


def parse_responses_request(raw: bytes) -> ResponsesParams:
    """Shape-checks a /responses body and maps it onto the contract."""
    values = RESPONSES_REQUEST.parse(raw)
    messages: Conversation = values["input"]
    if (instructions := values["instructions"]) is not None:
        messages.prepend(chat_pb2.ChatMessage(role="system", content=instructions), "instructions")
    request = scheduler_pb2.CreateChatCompletionRequest(
        model=values["model"],
        messages=messages.messages,
        sampling=_sampling(values),
        user=values["user"] or values["safety_identifier"] or "",
        tools=values["tools"],
        metadata=values["metadata"] or {},
    )
    if (priority := values["priority"]) is not None:
        request.priority = priority
    if (choice := values["tool_choice"]) is not None:
        request.tool_choice.CopyFrom(choice)
    if (parallel := values["parallel_tool_calls"]) is not None:
        request.parallel_tool_calls = parallel
    if (text := values["text"]) is not None and text["format"] is not None:
        request.response_format.CopyFrom(text["format"])
    stream: bool = values["stream"]
    options = p.checked_stream_options(values)
    request.collect = not stream  # a whole answer travels from the core as one message
    return ResponsesParams(
        request=request,
        stream=stream,
        obfuscate=bool(options.get("include_obfuscation")),
        echo=_echo(request, instructions, values["top_logprobs"]),
        conversation=messages,
    )


def _echo(
    request: scheduler_pb2.CreateChatCompletionRequest,
    instructions: str | None,
    top_logprobs: int | None,
) -> objects.RequestEcho:
    """What a Response repeats of its request, read back from the contract's message."""
    sampling = request.sampling
    return {
        "instructions": instructions,
        "max_output_tokens": sampling.max_tokens or None,
        "parallel_tool_calls": (
            request.parallel_tool_calls if request.HasField("parallel_tool_calls") else True
        ),
        "temperature": sampling.temperature if sampling.HasField("temperature") else None,
        "text": {"format": _format_echo(request.response_format)},
        "tool_choice": _tool_choice_echo(request),
        "tools": [_tool_echo(tool) for tool in request.tools],
        "top_logprobs": top_logprobs,
        "top_p": sampling.top_p if sampling.HasField("top_p") else None,
        "user": request.user or None,
        "metadata": dict(request.metadata),
    }


def _json(text: str) -> objects.JsonObject:
    return cast(objects.JsonObject, orjson.loads(text))


def _tool_echo(tool: chat_pb2.Tool) -> objects.FunctionTool:
    return {
        "type": "function",
        "name": tool.name,
        "description": tool.description or None,
        "parameters": _json(tool.parameters_json) if tool.parameters_json else None,
        "strict": tool.strict if tool.HasField("strict") else None,
    }


def _tool_choice_echo(request: scheduler_pb2.CreateChatCompletionRequest) -> objects.ToolChoice:
    choice = request.tool_choice
    if choice.mode == chat_pb2.TOOL_CHOICE_MODE_FUNCTION:
        return {"type": "function", "name": choice.function}
    return _MODES.get(choice.mode, "auto")


def _format_echo(
    given: chat_pb2.ResponseFormat,
) -> objects.TextFormatPlain | objects.TextFormatJsonSchema:
    if given.type == chat_pb2.RESPONSE_FORMAT_TYPE_JSON_OBJECT:
        return {"type": "json_object"}
    if given.type != chat_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA:
        return {"type": "text"}
    out: objects.TextFormatJsonSchema = {
        "type": "json_schema",
        "name": given.name,
        "schema": _json(given.schema_json) if given.schema_json else cast(objects.JsonObject, {}),
        "strict": given.strict if given.HasField("strict") else None,
    }
    if given.description:
        out["description"] = given.description
    return out
