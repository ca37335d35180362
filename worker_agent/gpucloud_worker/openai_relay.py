"""The openai backend's reading of its upstream's answers: a streamed chat or text
completion as Chunks and a Finish.

Token accounting: each delta is one token (servers stream one token per delta; one
that batches several is under-counted there), or as many as its logprobs list. The
Finish carries the upstream's usage when it sends a usage chunk, else the counted
tokens and the prompt estimate that the first chunk carries too, for tasks that end
before their Finish.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import orjson

from gpucloud_worker.backend import (
    BackendError,
    Chunk,
    ErrorKind,
    Finish,
    FinishReason,
    TokenLogprob,
    ToolCallDelta,
    TopLogprob,
)
from gpucloud_worker.openai_errors import error_fields

log = logging.getLogger(__name__)

_FINISH_REASONS = {
    "stop": FinishReason.STOP,
    "length": FinishReason.LENGTH,
    "tool_calls": FinishReason.TOOL_CALLS,
    "function_call": FinishReason.TOOL_CALLS,  # the deprecated functions' name for it
    "content_filter": FinishReason.CONTENT_FILTER,
}


class Relay:
    """What a task's upstream streams have produced so far, chat or text completion.

    `choices` is how many the task asked for (n, times the prompts of a text
    completion). A task may take several upstream requests, one after the other
    (`begin`). `echo` starts each choice's text with its prompt (see Echo);
    `top_logprobs` bounds a chat token's alternatives.
    """

    def __init__(
        self,
        choices: int,
        prompt_estimate: int,
        echo: Echo | None = None,
        top_logprobs: int | None = None,
    ) -> None:
        self.choices = choices
        self.top_logprobs = top_logprobs  # alternatives per chat token, at most
        # Carried by the first chunk, so that a task that never finishes is still
        # billed for its prompt; the upstream's usage, if it comes, wins in the Finish.
        self.prompt_estimate = prompt_estimate
        self.echo = echo
        self.relayed = 0  # chunks
        self.generated = 0  # tokens
        self.reasons: dict[int, FinishReason] = {}
        self.offset = 0  # of the current request's choices among the task's
        self.requests = 0
        # Per request (by offset): prompt, completion, cached; the last report wins.
        self.usage: dict[int, tuple[int, int, int]] = {}
        # (choice, tool call index): the id and name already relayed.
        self.calls: dict[tuple[int, int], tuple[str, str]] = {}

    def begin(self, offset: int = 0) -> None:
        """The next upstream request, whose choice i is the task's `offset + i`."""
        self.offset = offset
        self.requests += 1

    def feed(self, event: dict[str, Any]) -> list[Chunk]:
        """The Chunks of one upstream event; notes its usage and finish reasons."""
        try:
            return self._feed(event)
        except (AttributeError, TypeError, ValueError) as error:
            raise httpx.DecodingError(f"malformed upstream event: {error}") from error

    def _feed(self, event: dict[str, Any]) -> list[Chunk]:
        if "error" in event:
            raise self._event_error(event["error"])
        usage = event.get("usage")
        if isinstance(usage, dict):
            self.usage[self.offset] = _usage(usage)
        chunks: list[Chunk] = []
        for choice in event.get("choices") or ():
            index = self.offset + int(choice.get("index") or 0)
            reason = choice.get("finish_reason")
            chunks += self._chunks(index, choice, finishing=bool(reason))
            if reason:
                self.reasons[index] = _FINISH_REASONS.get(reason, FinishReason.STOP)
        return chunks

    def _chunks(self, index: int, choice: dict[str, Any], *, finishing: bool) -> list[Chunk]:
        delta = choice.get("delta")
        if delta is not None:  # chat
            text = delta.get("content") or ""
            calls = self._tool_calls(index, delta.get("tool_calls"), delta.get("function_call"))
        else:  # text completion
            text, calls = choice.get("text") or "", ()
        raw_logprobs = choice.get("logprobs")
        logprobs = token_logprobs(raw_logprobs, self.top_logprobs)
        chunks = []
        if self.echo is not None and (text or logprobs or finishing):
            prompt = self.echo.owed(index, text, _first_offset(raw_logprobs))
            if prompt:
                chunks.append(self._chunk(index, prompt, 0))
        if text or calls or logprobs:
            tokens = self.echo.generated(index, text, logprobs) if self.echo else len(logprobs) or 1
            chunks.append(self._chunk(index, text, tokens, calls, logprobs))
        return chunks

    def _chunk(
        self,
        index: int,
        text: str,
        tokens: int,
        calls: tuple[ToolCallDelta, ...] = (),
        logprobs: tuple[TokenLogprob, ...] = (),
    ) -> Chunk:
        prompt = 0 if self.relayed else self.prompt_estimate
        self.relayed += 1
        self.generated += tokens
        return Chunk(index, text, tokens, prompt, calls, logprobs)

    def _tool_calls(self, choice: int, raw: Any, function_call: Any) -> tuple[ToolCallDelta, ...]:
        """A delta's tool call pieces; an id or name already relayed is left out of the
        later pieces (llama-cpp-python repeats both in every piece)."""
        if not raw and isinstance(function_call, dict):
            raw = [{"index": 0, "function": function_call}]  # the deprecated functions' form
        deltas = []
        for position, call in enumerate(raw or ()):
            function = call.get("function") or {}
            index = int(call.get("index", position))
            call_id, name = str(call.get("id") or ""), str(function.get("name") or "")
            seen_id, seen_name = self.calls.get((choice, index), ("", ""))
            self.calls[(choice, index)] = (seen_id or call_id, seen_name or name)
            deltas.append(
                ToolCallDelta(
                    index=index,
                    id="" if call_id == seen_id else call_id,
                    name="" if name == seen_name else name,
                    arguments=str(function.get("arguments") or ""),
                )
            )
        return tuple(deltas)

    def failure(self, message: str) -> BackendError:
        """Before the first chunk the core may run the task elsewhere; after, it cannot."""
        if self.relayed:
            return BackendError(ErrorKind.INTERNAL, f"{message} after {self.generated} token(s)")
        return BackendError(ErrorKind.RETRYABLE, message)

    def finish(self) -> Finish:
        if not self.reasons:
            # A clean end without a finish reason is the upstream failing this very
            # request (llama-cpp-python does so on context overflow): no retry.
            raise BackendError(ErrorKind.INTERNAL, "upstream ended the stream without finishing")
        missing = [i for i in range(self.choices) if i not in self.reasons]
        if missing:
            log.warning(
                "upstream returned no choice %s of %d; ending it empty", missing, self.choices
            )
        reasons = tuple(self.reasons.get(i, FinishReason.STOP) for i in range(self.choices))
        if self.usage and len(self.usage) == self.requests:
            reports = self.usage.values()
            prompt = sum(p for p, _, _ in reports)
            completion = sum(c for _, c, _ in reports)
            cached = sum(c for _, _, c in reports)
        else:
            prompt, completion, cached = self.prompt_estimate, self.generated, 0
        return Finish(
            reasons=reasons,
            prompt_tokens=prompt,
            completion_tokens=completion,
            cached_tokens=max(0, min(cached, prompt)),
        )

    def _event_error(self, error: Any) -> BackendError:
        message, status, details = error_fields(error)
        if 400 <= status < 500 and not self.relayed:
            return BackendError(ErrorKind.INVALID_REQUEST, message, details)
        return self.failure(f"upstream error: {message}")


class Echo:
    """A text completion's echo: each choice's text starts with its prompt.

    `prompts[i]` is choice i's. `asked` says whether the upstream was asked to echo,
    which it is only with logprobs (the prompt's logprobs only it knows). Where it
    was not asked, or ignores it (llama-cpp-python when streaming), the relay sends
    the prompt itself, before the choice's first chunk, worth no tokens.
    """

    def __init__(self, prompts: Sequence[str], *, asked: bool) -> None:
        self.due = {i: p for i, p in enumerate(prompts) if p}  # not yet seen or sent
        self.asked = asked
        self.left: dict[int, int] = {}  # characters of the prompt the upstream still echoes

    def owed(self, index: int, text: str, offset: int | None) -> str:
        """The prompt the relay must send before this first piece of choice `index`,
        or "" (not the first piece, or the upstream echoes it)."""
        prompt = self.due.pop(index, "")
        if not prompt:
            return ""
        if offset is not None:  # where the piece's first token starts in the choice
            echoed = offset == 0
        else:
            echoed = bool(text) and (text.startswith(prompt) or prompt.startswith(text))
        if self.asked and echoed:
            self.left[index] = len(prompt)
            return ""
        return prompt

    def generated(self, index: int, text: str, logprobs: Sequence[TokenLogprob]) -> int:
        """The tokens of a piece that the model generated, not echoed from the prompt."""
        echo = min(self.left.get(index, 0), len(text))
        if echo:
            self.left[index] -= echo
        if not logprobs:
            return 0 if text and len(text) == echo else 1
        offset = generated = 0
        for lp in logprobs:
            if offset >= echo:
                generated += 1
            offset += len(lp.token)
        return generated


def token_logprobs(raw: Any, top: int | None = None) -> tuple[TokenLogprob, ...]:
    """A choice's logprobs, in the chat form (`content`: one object per token) or the
    text completion's (parallel `tokens`, `token_logprobs` and `top_logprobs` lists).
    A chat token keeps its `top` likeliest alternatives, as OpenAI's: llama-cpp-python
    adds the sampled token's. (A text completion's may have one more, as OpenAI's.)"""
    if not isinstance(raw, dict):
        return ()
    if "tokens" in raw:
        tops = raw.get("top_logprobs") or ()
        return tuple(
            TokenLogprob(str(token), _logprob(lp), _top(tops[i] if i < len(tops) else None))
            for i, (token, lp) in enumerate(
                zip(raw["tokens"], raw.get("token_logprobs") or (), strict=False)
            )
        )
    return tuple(
        TokenLogprob(
            str(entry["token"]),
            _logprob(entry.get("logprob")),
            _top({t["token"]: t.get("logprob") for t in entry.get("top_logprobs") or ()})[:top],
        )
        for entry in raw.get("content") or ()
    )


def _top(alternatives: Any) -> tuple[TopLogprob, ...]:
    """A text completion's {token: logprob} at one position, most likely first."""
    if not isinstance(alternatives, dict):
        return ()
    ranked = sorted(alternatives.items(), key=lambda item: -_logprob(item[1]))
    return tuple(TopLogprob(str(token), _logprob(lp)) for token, lp in ranked)


def _first_offset(raw: Any) -> int | None:
    """Where a text completion piece's first token starts in its choice's text."""
    offsets = raw.get("text_offset") if isinstance(raw, dict) else None
    return int(offsets[0]) if isinstance(offsets, list) and offsets else None


def _logprob(value: Any) -> float:
    """An upstream's logprob; null (an echoed prompt's first token has none) as 0."""
    return 0.0 if value is None else float(value)


def _usage(usage: dict[str, Any]) -> tuple[int, int, int]:
    # vLLM sends prompt_tokens_details only with --enable-prompt-tokens-details, as
    # null otherwise; without it nothing is known to be cached.
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return (
        int(usage.get("prompt_tokens") or 0),
        int(usage.get("completion_tokens") or 0),
        int(cached or 0),
    )


async def sse_data(response: httpx.Response) -> AsyncIterator[str]:
    """The `data` payload of each server-sent event (comments and other fields skipped)."""
    lines: list[str] = []
    async for line in response.aiter_lines():
        if not line:
            if lines:
                yield "\n".join(lines)
                lines = []
        elif line.startswith("data:"):
            lines.append(line[5:].removeprefix(" "))
    if lines:
        yield "\n".join(lines)


def decode(data: str) -> dict[str, Any]:
    """One event's JSON object; httpx.DecodingError when it is not one."""
    try:
        event = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise httpx.DecodingError(
            f"upstream sent an event that is not JSON: {data[:80]!r}"
        ) from error
    if not isinstance(event, dict):
        raise httpx.DecodingError("upstream sent an event that is not a JSON object")
    return event
