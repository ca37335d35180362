"""Content keys of a prompt's full KV blocks, so a repeated prefix hits the prefix cache."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator

from gpucloud_common.tokens import CHARS_PER_TOKEN, MESSAGE_TEMPLATE_TOKENS, REPLY_PRIMING_TOKENS
from gpucloud_sim.kv import BLOCK_TOKENS
from gpucloud_worker.backend import Message


def prompt_tokens(messages: Iterable[Message]) -> Iterator[str]:
    """The sim's prompt as tokens, consistent with text.count_prompt_tokens.

    Each message is its chat-template tokens then its content in CHARS_PER_TOKEN
    pieces; the reply priming comes last.
    """
    for message in messages:
        yield from (f"<|{message.role}|>",) * MESSAGE_TEMPLATE_TOKENS
        content = message.content
        for start in range(0, len(content), CHARS_PER_TOKEN):
            yield content[start : start + CHARS_PER_TOKEN]
    yield from ("<|assistant|>",) * REPLY_PRIMING_TOKENS


def block_keys(model_id: str, messages: Iterable[Message]) -> tuple[int, ...]:
    """One key per full block: a hash of the block's tokens chained to the previous key,
    as vLLM hashes blocks, so equal keys mean equal prefixes."""
    keys: list[int] = []
    parent = hashlib.blake2b(model_id.encode(), digest_size=8).digest()
    block: list[str] = []
    for token in prompt_tokens(messages):
        block.append(token)
        if len(block) == BLOCK_TOKENS:
            digest = hashlib.blake2b(parent + "\x1f".join(block).encode(), digest_size=8)
            parent = digest.digest()
            keys.append(int.from_bytes(parent, "big"))
            block.clear()
    return tuple(keys)
