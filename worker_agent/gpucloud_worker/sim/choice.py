"""One choice of a generation: its tokens, stop sequences and finish reason."""

from __future__ import annotations

from collections.abc import Sequence

from gpucloud_worker.backend import Chunk, FinishReason
from gpucloud_worker.sim.text import TextStream


def find_stop(text: str, stops: Sequence[str]) -> int | None:
    """Where the earliest stop sequence starts in `text`, or None."""
    found = [at for at in (text.find(stop) for stop in stops) if at >= 0]
    return min(found) if found else None


def held_back(text: str, stops: Sequence[str]) -> int:
    """Length of the longest end of `text` that may be the start of a stop sequence."""
    longest = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:size]):
                longest = size
                break
    return longest


class Choice:
    """Turns a token stream into Chunks, never emitting text past a stop sequence.

    Text that may be the start of a stop sequence is held back until the next token
    settles it; its tokens travel with the next chunk, so the chunks' token counts
    always add up to `tokens`.
    """

    def __init__(self, index: int, stream: TextStream, stops: Sequence[str], natural: bool):
        self.index = index
        self.tokens = 0
        self.reason: FinishReason | None = None
        self._stream = stream
        self._stops = tuple(stop for stop in stops if stop)
        self._natural = natural
        self._buffer = ""
        self._unsent_tokens = 0

    def step(self) -> Chunk | None:
        """Generates one token; returns what can be sent now."""
        self._buffer += self._stream.next_token()
        self.tokens += 1
        self._unsent_tokens += 1
        cut = find_stop(self._buffer, self._stops)
        if cut is not None:
            self._buffer = self._buffer[:cut]
            return self._finish(FinishReason.STOP)
        if self._natural and self._stream.answer_ended:
            return self._finish(FinishReason.STOP)
        return self._send(len(self._buffer) - held_back(self._buffer, self._stops))

    def truncate(self) -> Chunk | None:
        """Ends the choice at the token limit, sending any held-back text."""
        return self._finish(FinishReason.LENGTH)

    def _finish(self, reason: FinishReason) -> Chunk | None:
        self.reason = reason
        if not self._buffer and self._unsent_tokens == 0:
            return None
        return self._send(len(self._buffer), final=True)

    def _send(self, size: int, final: bool = False) -> Chunk | None:
        text, self._buffer = self._buffer[:size], self._buffer[size:]
        if not text and not final:
            return None
        chunk = Chunk(index=self.index, text=text, tokens=self._unsent_tokens)
        self._unsent_tokens = 0
        return chunk
