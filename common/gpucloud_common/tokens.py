"""The token estimate shared by the core's admission check and the simulated GPUs.

Without the model's tokenizer, a prompt's tokens are approximated as one per
CHARS_PER_TOKEN characters (the usual rule of thumb for English with BPE
tokenizers), plus the chat template's tokens around each message and before the
reply (OpenAI's cookbook counts 3 per message and 3 to prime the reply; Llama 3's
template uses 4-5). The simulator counts exactly this way, so for it the core's
context check is exact; for a real backend it is an estimate, and the backend
judges what the estimate lets through.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

CHARS_PER_TOKEN = 4
MESSAGE_TEMPLATE_TOKENS = 4
REPLY_PRIMING_TOKENS = 3


def text_tokens(text: str) -> int:
    """Tokens of bare text (a completion prompt, an embedding input)."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def chat_tokens(message_texts: Iterable[str]) -> int:
    """Tokens of a chat prompt, given each message's text (its content, and the name
    and arguments of its tool calls, joined)."""
    total = REPLY_PRIMING_TOKENS
    for text in message_texts:
        total += MESSAGE_TEMPLATE_TOKENS + text_tokens(text)
    return total


def tool_call_text(name: str, arguments: str) -> str:
    """What an assistant message's tool call adds to the message's text."""
    return name + arguments


def tools_text(tools: Iterable[tuple[str, str, Mapping[str, Any]]]) -> str:
    """The tool definitions (name, description, JSON Schema parameters) as the text of one
    more message: the schema in canonical JSON, so that whoever parsed it counts alike."""
    return "".join(
        name + description + json.dumps(parameters, sort_keys=True, separators=(",", ":"))
        for name, description, parameters in tools
    )
