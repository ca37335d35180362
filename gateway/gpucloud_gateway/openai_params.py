"""OpenAI request parameters that several bodies share (chat, completions, responses).

Sampling, tools, tool choice and structured output, each a field that checks its
JSON's shape and reads as the contract's message; the bounds of the values are the
core's. Tables that sit at different places in different bodies (a function's
definition is `tools[].function` in chat and `tools[]` in responses) are functions
of where they sit, so that a refusal names the right `param`.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from gpucloud.v1 import chat_pb2
from gpucloud_gateway.errors import invalid
from gpucloud_gateway.fields import (
    Boolean,
    Field,
    Flag,
    Integer,
    Items,
    JsonText,
    Number,
    Object,
    Schema,
    String,
    StringMap,
    Tagged,
)
from gpucloud_gateway.validation import INT64_MAX, INT64_MIN, UINT32_MAX, decimal, type_error

_TOKEN_ID = re.compile(r"-?[0-9]{1,19}")
# A chunk's content plus its `obfuscation` padding fills a multiple of this many characters.
_OBFUSCATION_BLOCK = 32


class Stop(Field):
    """`stop`: one sequence or several."""

    absent = ()

    def check(self, value: Any) -> list[str]:
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
            raise type_error(self.param, "a string or an array of strings", value)
        return list(value)

    def schema(self) -> Schema:
        return {
            "description": self.description,
            "anyOf": [
                {"type": "string"},
                {"type": "array", "items": {"type": "string"}},
                {"type": "null"},
            ],
        }


class LogitBias(Field):
    """`logit_bias`: an object of token ids (its keys, in decimal) to biases."""

    json_type = {"type": "object", "additionalProperties": {"type": "number"}}

    def check(self, value: Any) -> dict[int, float]:
        if not isinstance(value, dict):
            raise type_error(self.param, "an object", value)
        out: dict[int, float] = {}
        for key, bias in value.items():
            token = int(key) if _TOKEN_ID.fullmatch(key) else None
            if token is None or not INT64_MIN <= token <= INT64_MAX:
                raise invalid(
                    f"Invalid '{self.param}': the key '{key[:32]}' is not a token id.",
                    self.param,
                    "invalid_value",
                )
            out[token] = decimal(bias, self.param)
        return out


FREQUENCY_PENALTY = Number(
    "frequency_penalty", "Penalises tokens by how often they appeared so far, -2 to 2."
)
LOGIT_BIAS = LogitBias(
    "logit_bias", "Token id (as a decimal string) -> a bias added to its logit, -100 to 100."
)
METADATA = StringMap(
    "metadata",
    "Up to 16 key-value pairs (keys up to 64, values up to 512 characters), kept with the "
    "request's log line.",
)
N = Integer("n", "How many choices to generate.", 1, UINT32_MAX, example=1)
PRESENCE_PENALTY = Number(
    "presence_penalty", "Penalises tokens that appeared so far at all, -2 to 2."
)
PRIORITY = Integer(
    "priority",
    "Extension: the queue priority; may lower, never raise, the key's own.",
    0,
    UINT32_MAX,
)
SEED = Integer("seed", "Seed for sampling, where the backend supports it.", INT64_MIN, INT64_MAX)
STOP = Stop("stop", "Up to 4 sequences where generation stops.")
TEMPERATURE = Number("temperature", "Sampling temperature, 0 to 2.", example=0.7)
TOP_P = Number("top_p", "Nucleus sampling probability mass, 0 to 1.")
USER = String("user", "An end-user id, for abuse monitoring.")
_OPTIONAL_SAMPLING = ("temperature", "top_p", "presence_penalty", "frequency_penalty", "seed")


STREAM_OPTIONS = Object(
    "stream_options",
    "Options of a streamed answer; only with `stream: true`.",
    [
        Boolean(
            "include_usage",
            "Send a last chunk with the usage (and `usage: null` on the others).",
            param="stream_options.include_usage",
        ),
        Boolean(
            "include_obfuscation",
            "Pad each output chunk with random characters in an `obfuscation` field, so that "
            "chunk sizes do not tell the text (off unless asked for).",
            param="stream_options.include_obfuscation",
        ),
    ],
)


def checked_stream_options(values: dict[str, Any]) -> dict[str, Any]:
    """The stream options, which only a streaming request may give."""
    options = values["stream_options"]
    if options is not None and not values["stream"]:
        raise invalid(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            "stream_options",
            "invalid_value",
        )
    return options or {"include_usage": False, "include_obfuscation": False}


def obfuscation(text: str) -> str:
    """Random padding that takes `text` to the next multiple of the block size."""
    pad = _OBFUSCATION_BLOCK - len(text) % _OBFUSCATION_BLOCK
    return secrets.token_urlsafe(_OBFUSCATION_BLOCK)[:pad]


def sampling(values: dict[str, Any]) -> chat_pb2.SamplingParams:
    """The sampling parameters every generation body has (the fields above), from its values."""
    params = chat_pb2.SamplingParams(stop=values["stop"], n=values["n"] or 1)
    if bias := values["logit_bias"]:  # only when given: filling a proto map is not free
        params.logit_bias.update(bias)
    for name in _OPTIONAL_SAMPLING:
        if (value := values[name]) is not None:
            setattr(params, name, value)
    return params


def function_fields(at: str) -> list[Field]:
    """A function definition's members; `at` is where the definition sits (`tools[].function`)."""
    return [
        String(
            "name",
            "The function's name: letters, digits, '_' and '-', at most 64.",
            required=True,
            param=f"{at}.name",
        ),
        String("description", "What the function does, for the model.", param=f"{at}.description"),
        JsonText(
            "parameters",
            "The arguments as a JSON Schema object; left out: none.",
            param=f"{at}.parameters",
        ),
        Flag(
            "strict", "Whether the arguments must follow the schema exactly.", param=f"{at}.strict"
        ),
    ]


def function_tool(values: dict[str, Any]) -> chat_pb2.Tool:
    """The contract's Tool from the values of `function_fields`."""
    tool = chat_pb2.Tool(
        name=values["name"],
        description=values["description"] or "",
        parameters_json=values["parameters"] or "",
    )
    if values["strict"] is not None:
        tool.strict = values["strict"]
    return tool


TOOLS = Items(
    "tools",
    "Functions the model may call.",
    Tagged(
        "tools",
        "A tool: a function.",
        {
            "function": [
                Object(
                    "function",
                    "The function.",
                    function_fields("tools[].function"),
                    required=True,
                    param="tools[].function",
                    into=function_tool,
                )
            ]
        },
        into=lambda _, values: values["function"],
        param="tools[]",
    ),
)
TOOL_CHOICE_MODES = {
    "none": chat_pb2.TOOL_CHOICE_MODE_NONE,
    "auto": chat_pb2.TOOL_CHOICE_MODE_AUTO,
    "required": chat_pb2.TOOL_CHOICE_MODE_REQUIRED,
}


def tool_choice(mode: str, param: str) -> chat_pb2.ToolChoice:
    """A tool choice given as text: "none", "auto" or "required"."""
    known = TOOL_CHOICE_MODES.get(mode)
    if known is None:
        raise invalid(
            f"Invalid '{param}': expected 'none', 'auto', 'required' or an object naming a "
            "function.",
            param,
            "invalid_value",
        )
    return chat_pb2.ToolChoice(mode=known)


def named_tool(name: str) -> chat_pb2.ToolChoice:
    """A tool choice that names the function the model must call."""
    return chat_pb2.ToolChoice(mode=chat_pb2.TOOL_CHOICE_MODE_FUNCTION, function=name)


class ToolChoice(Field):
    """`tool_choice`: "none", "auto", "required", or {type: "function", function: {name}}."""

    def __init__(self, name: str, description: str, **kw: Any) -> None:
        super().__init__(name, description, **kw)
        at = f"{self.param}.function"
        function = [String("name", "The function's name.", required=True, param=f"{at}.name")]
        self._named = Tagged(
            name,
            "The function the model must call.",
            {"function": [Object("function", "The function.", function, required=True, param=at)]},
            required=True,
            param=self.param,
            into=lambda _, values: named_tool(values["function"]["name"]),
        )

    def check(self, value: Any) -> chat_pb2.ToolChoice:
        if isinstance(value, str):
            return tool_choice(value, self.param)
        if not isinstance(value, dict):
            raise type_error(self.param, "a string or an object", value)
        choice: chat_pb2.ToolChoice = self._named.check(value)
        return choice

    def schema(self) -> Schema:
        modes = {"type": "string", "enum": list(TOOL_CHOICE_MODES)}
        return {
            "description": self.description,
            "anyOf": [modes, self._named.schema(), {"type": "null"}],
        }


def json_schema_fields(at: str) -> list[Field]:
    """A JSON Schema output format's members; `at` is where they sit
    (`response_format.json_schema`)."""
    return [
        String(
            "name",
            "The schema's name: letters, digits, '_' and '-', at most 64.",
            required=True,
            param=f"{at}.name",
        ),
        String("description", "What the schema is for.", param=f"{at}.description"),
        JsonText("schema", "The JSON Schema the output follows.", param=f"{at}.schema"),
        Flag("strict", "Whether the output must follow the schema exactly.", param=f"{at}.strict"),
    ]


def json_schema_format(values: dict[str, Any]) -> chat_pb2.ResponseFormat:
    """The contract's ResponseFormat from the values of `json_schema_fields`."""
    out = chat_pb2.ResponseFormat(
        type=chat_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA,
        name=values["name"],
        schema_json=values["schema"] or "",
        description=values["description"] or "",
    )
    if values["strict"] is not None:
        out.strict = values["strict"]
    return out


FORMAT_TYPES = {
    "text": chat_pb2.RESPONSE_FORMAT_TYPE_TEXT,
    "json_object": chat_pb2.RESPONSE_FORMAT_TYPE_JSON_OBJECT,
}


def _response_format(kind: str, values: dict[str, Any]) -> chat_pb2.ResponseFormat:
    if kind == "json_schema":
        schema: chat_pb2.ResponseFormat = values["json_schema"]
        return schema
    return chat_pb2.ResponseFormat(type=FORMAT_TYPES[kind])


RESPONSE_FORMAT = Tagged(
    "response_format",
    "The output's format: free text, any JSON object, or JSON following a schema.",
    {
        "text": [],
        "json_object": [],
        "json_schema": [
            Object(
                "json_schema",
                "The schema.",
                json_schema_fields("response_format.json_schema"),
                required=True,
                param="response_format.json_schema",
                into=json_schema_format,
            )
        ],
    },
    into=_response_format,
)
