"""What a choice's tokens come from: free text, or a script (JSON content, tool calls)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from gpucloud_worker.backend import FinishReason, ToolCallDelta
from gpucloud_worker.sim.prefix import text_pieces
from gpucloud_worker.sim.text import TextStream


@dataclass(frozen=True, slots=True)
class Token:
    """One generated token: text, a piece of a tool call, or neither (a token the
    client never sees, such as the markup that opens a tool call)."""

    text: str = ""
    call: ToolCallDelta | None = None


class Source(Protocol):
    def next_token(self) -> Token:
        """The next token."""

    @property
    def ended(self) -> FinishReason | None:
        """Why the output is complete once its last token is out; None before."""


class TextSource:
    """Free text from a TextStream; a natural answer (no max_tokens) ends with "stop"."""

    def __init__(self, stream: TextStream, natural: bool) -> None:
        self._stream = stream
        self._natural = natural

    def next_token(self) -> Token:
        return Token(self._stream.next_token())

    @property
    def ended(self) -> FinishReason | None:
        if self._natural and self._stream.answer_ended:
            return FinishReason.STOP
        return None


class ScriptSource:
    """A fixed sequence of tokens that ends with `reason` whatever max_tokens allows."""

    def __init__(self, tokens: Iterable[Token], reason: FinishReason) -> None:
        self._tokens = deque(tokens)
        self._reason = reason

    def next_token(self) -> Token:
        return self._tokens.popleft() if self._tokens else Token()

    @property
    def ended(self) -> FinishReason | None:
        return None if self._tokens else self._reason


def text_tokens_of(text: str) -> list[Token]:
    """Text as tokens of CHARS_PER_TOKEN characters: as many as the core's estimate."""
    return [Token(piece) for piece in text_pieces(text)]
