"""A prompt as the sim's tokens, and the content keys of its full KV blocks, so a
repeated prefix hits the prefix cache."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence

from gpucloud_common.tokens import CHARS_PER_TOKEN, MESSAGE_TEMPLATE_TOKENS, REPLY_PRIMING_TOKENS
from gpucloud_sim.kv import BLOCK_TOKENS
from gpucloud_worker.backend import Message, Tool
from gpucloud_worker.sim.text import message_text, tools_message


def text_pieces(text: str) -> Iterator[str]:
    """Bare text as tokens: CHARS_PER_TOKEN characters each (gpucloud_common.tokens)."""
    for start in range(0, len(text), CHARS_PER_TOKEN):
        yield text[start : start + CHARS_PER_TOKEN]


def chat_pieces(messages: Iterable[Message], tools: Sequence[Tool] = ()) -> Iterator[str]:
    """A chat prompt as tokens, as many as text.count_prompt_tokens counts.

    The tool definitions come first, as one message (chat templates put them in the
    system prompt, so turns of one conversation share them as a prefix); then each
    message's chat-template tokens and text; the reply priming last.
    """
    texts = [("tools", tools_message(tools))] if tools else []
    texts += [(message.role, message_text(message)) for message in messages]
    for role, text in texts:
        yield from (f"<|{role}|>",) * MESSAGE_TEMPLATE_TOKENS
        yield from text_pieces(text)
    yield from ("<|assistant|>",) * REPLY_PRIMING_TOKENS


def block_keys(model_id: str, pieces: Iterable[str]) -> tuple[int, ...]:
    """One key per full block of the prompt's tokens: a hash of the block chained to the
    previous key, as vLLM hashes blocks, so equal keys mean equal prefixes."""
    keys: list[int] = []
    parent = hashlib.blake2b(model_id.encode(), digest_size=8).digest()
    block: list[str] = []
    for token in pieces:
        block.append(token)
        if len(block) == BLOCK_TOKENS:
            digest = hashlib.blake2b(parent + "\x1f".join(block).encode(), digest_size=8)
            parent = digest.digest()
            keys.append(int.from_bytes(parent, "big"))
            block.clear()
    return tuple(keys)
