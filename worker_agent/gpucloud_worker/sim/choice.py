"""One choice of a generation: its tokens, stop sequences, logprobs and finish reason."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from gpucloud_worker.backend import Chunk, FinishReason, TokenLogprob, ToolCallDelta
from gpucloud_worker.sim.logprobs import Logprobs
from gpucloud_worker.sim.sources import Source


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


@dataclass(frozen=True, slots=True)
class Echo:
    """What a choice's first chunk starts with (a completion's prompt, with `echo`)."""

    text: str
    logprobs: tuple[TokenLogprob, ...] = ()


@dataclass(slots=True)
class _Pending:
    """A token's text not sent yet, and its logprob (with request.logprobs)."""

    text: str
    logprob: TokenLogprob | None


class Choice:
    """Turns a token source into Chunks, never emitting text past a stop sequence.

    Tokens that may be the start of a stop sequence are held back, whole, until the
    next token settles it; their count travels with the next chunk, so the chunks'
    token counts add up to `tokens`, and a chunk's logprobs name exactly its text.
    Tool-call pieces are sent as they come; stop sequences do not apply to them.
    """

    def __init__(
        self,
        index: int,
        source: Source,
        stops: Sequence[str],
        *,
        logprobs: Logprobs | None = None,
        echo: Echo | None = None,
    ) -> None:
        self.index = index
        self.tokens = 0
        self.reason: FinishReason | None = None
        self._source = source
        self._stops = tuple(stop for stop in stops if stop)
        self._logprobs = logprobs
        self._echo = echo
        self._pending: list[_Pending] = []
        self._calls: list[ToolCallDelta] = []
        self._unsent_tokens = 0

    def step(self) -> Chunk | None:
        """Generates one token; returns what can be sent now."""
        token = self._source.next_token()
        self.tokens += 1
        self._unsent_tokens += 1
        if token.call is not None:
            self._calls.append(token.call)
        elif token.text:
            scored = self._logprobs.of(token.text) if self._logprobs else None
            self._pending.append(_Pending(token.text, scored))
            cut = find_stop(self._text(), self._stops)
            if cut is not None:
                self._cut(cut)
                return self._finish(FinishReason.STOP)
        ended = self._source.ended
        if ended is not None:
            return self._finish(ended)
        return self._send(held_back(self._text(), self._stops))

    def truncate(self) -> Chunk | None:
        """Ends the choice at the token limit, sending any held-back text."""
        return self._finish(FinishReason.LENGTH)

    def _text(self) -> str:
        return "".join(pending.text for pending in self._pending)

    def _cut(self, at: int) -> None:
        """Drops the pending text from `at` on, shortening the token it falls in."""
        kept: list[_Pending] = []
        start = 0
        for pending in self._pending:
            if start >= at:
                break
            if start + len(pending.text) > at:
                pending.text = pending.text[: at - start]
                if pending.logprob is not None:
                    pending.logprob = replace(pending.logprob, token=pending.text)
            kept.append(pending)
            start += len(pending.text)
        self._pending = kept

    def _finish(self, reason: FinishReason) -> Chunk | None:
        self.reason = reason
        return self._send(0, final=True)

    def _send(self, held: int, final: bool = False) -> Chunk | None:
        """A chunk of the pending tokens but those holding the last `held` characters."""
        count, size, room = 0, 0, len(self._text()) - held
        while count < len(self._pending) and size + len(self._pending[count].text) <= room:
            size += len(self._pending[count].text)
            count += 1
        sent, self._pending = self._pending[:count], self._pending[count:]
        if not (sent or self._calls or (final and self._unsent_tokens)):
            return None
        chunk = Chunk(
            index=self.index,
            text="".join(pending.text for pending in sent),
            tokens=self._unsent_tokens,
            tool_calls=tuple(self._calls),
            logprobs=tuple(p.logprob for p in sent if p.logprob is not None),
        )
        self._calls, self._unsent_tokens = [], 0
        if self._echo is not None:
            echo, self._echo = self._echo, None
            chunk = replace(
                chunk, text=echo.text + chunk.text, logprobs=echo.logprobs + chunk.logprobs
            )
        return chunk
