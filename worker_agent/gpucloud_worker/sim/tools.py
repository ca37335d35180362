"""Whether a simulated answer calls tools, which, and the calls' tokens.

"function" calls the named tool once; "required" calls one tool, or two when
parallel calls are allowed and the draw says so; "none" never calls. "auto" calls a
tool when the last user message asks for one: it names a word of the tool's name or
description, or says something like "weather", "search", "call" or "use"; after a
tool's result it answers in text, as a model that got what it asked for does.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence

from gpucloud_common.tokens import text_tokens
from gpucloud_worker.backend import (
    BackendError,
    ErrorKind,
    GenerationRequest,
    Message,
    Tool,
    ToolCallDelta,
)
from gpucloud_worker.sim.scalars import prompt_words
from gpucloud_worker.sim.schema_values import SchemaError, instance
from gpucloud_worker.sim.sources import Token, text_tokens_of

# Words that ask for a tool whatever the tools are called.
TRIGGERS = frozenset({"weather", "search", "call", "use", "tool", "lookup", "fetch"})
# Words too common to tie a message to a tool.
_COMMON = frozenset(
    {"get", "set", "the", "and", "for", "with", "from", "this", "that", "what", "when",
     "your", "about", "list", "into", "given", "some", "will", "which", "returns"}
)  # fmt: skip
# Share of "required" and "auto" answers with parallel calls allowed that make two calls.
SECOND_CALL_SHARE = 0.3
# Tokens of the markup that opens a call (e.g. Llama 3's <|python_tag|>), before its name.
CALL_OPEN_TOKENS = 1
_WORDS = re.compile(r"[a-z0-9]+")


def last_user_text(messages: Sequence[Message]) -> str:
    return next((m.content for m in reversed(messages) if m.role == "user"), "")


def _words(text: str) -> set[str]:
    """Lower-case words, camelCase and snake_case split."""
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", text)
    return {w for w in _WORDS.findall(spaced.lower()) if len(w) >= 3 and w not in _COMMON}


def _relevance(tool: Tool, asked: set[str]) -> int:
    return len(asked & (_words(tool.name) | _words(tool.description)))


def tools_to_call(request: GenerationRequest, rng: random.Random) -> list[Tool]:
    """The tools this answer calls, in order; [] to answer in text."""
    choice, tools = request.tool_choice, request.tools
    if choice.mode == "function":
        named = [tool for tool in tools if tool.name == choice.function]
        if not named:
            raise BackendError(
                ErrorKind.INVALID_REQUEST,
                f"tool_choice names {choice.function!r}, which is not among the tools",
                {"param": "tool_choice"},
            )
        return named[:1]
    if not tools or choice.mode not in ("auto", "required"):
        return []
    first = _first_tool(request, rng)
    if first is None:
        return []
    calls = [first]
    if request.parallel_tool_calls and rng.random() < SECOND_CALL_SHARE:
        calls.append(rng.choice(tools))
    return calls


def _first_tool(request: GenerationRequest, rng: random.Random) -> Tool | None:
    tools = request.tools
    asked = _words(last_user_text(request.messages))
    scores = [_relevance(tool, asked) for tool in tools]
    best = tools[scores.index(max(scores))] if max(scores) > 0 else None
    if request.tool_choice.mode == "required":
        return best or rng.choice(tools)
    if request.messages and request.messages[-1].role == "tool":
        return None
    if best is None and asked & TRIGGERS:
        return rng.choice(tools)
    return best


def call_id(rng: random.Random) -> str:
    """An OpenAI-style tool-call id: "call_" and 24 hex digits."""
    return f"call_{rng.getrandbits(96):024x}"


def arguments(tool: Tool, rng: random.Random, words: Sequence[str]) -> str:
    """JSON arguments that validate against the tool's parameters."""
    try:
        value = instance(tool.parameters or {"type": "object"}, rng, words)
    except SchemaError as error:
        raise BackendError(
            ErrorKind.INVALID_REQUEST,
            f"the parameters of tool {tool.name!r} admit no value the sim can write: {error}",
            {"param": "tools"},
        ) from None
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def call_tokens(
    calls: Sequence[Tool], rng: random.Random, messages: Sequence[Message]
) -> list[Token]:
    """The tokens of `calls`: per call, the opening markup and name (the first delta,
    with id and name, comes with the name's last token), then one delta per token of
    the arguments."""
    words = prompt_words(last_user_text(messages))
    tokens: list[Token] = []
    for index, tool in enumerate(calls):
        head = ToolCallDelta(index, call_id(rng), tool.name, "")
        tokens += [Token()] * (CALL_OPEN_TOKENS + max(1, text_tokens(tool.name)) - 1)
        tokens.append(Token(call=head))
        tokens += [
            Token(call=ToolCallDelta(index, arguments=piece.text))
            for piece in text_tokens_of(arguments(tool, rng, words))
        ]
    return tokens
