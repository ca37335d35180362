"""OpenAI's legacy text completions (/v1/completions) without I/O: the request onto the
contract, and the `text_completion` objects, whole or as chunks.

Prompt p's jth choice is choice p*n+j. The integer `logprobs` (0 to 5 alternatives)
travels as `sampling.logprobs` with `top_logprobs`; a choice's `text_offset`s place
its tokens at the end of the text they came with, after any echoed prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, NotRequired, TypedDict

import orjson

from gpucloud.v1 import chat_pb2, scheduler_pb2
from gpucloud_gateway import openai_objects as objects
from gpucloud_gateway import openai_params as p
from gpucloud_gateway.choices import Answer
from gpucloud_gateway.errors import invalid
from gpucloud_gateway.fields import Body, Boolean, Field, Integer, Refused, Schema, String
from gpucloud_gateway.validation import UINT32_MAX, type_error

DEFAULT_MAX_TOKENS = 16  # OpenAI's, for a request that leaves `max_tokens` out
FinishReason = Literal["stop", "length", "content_filter"]


class CompletionLogprobs(TypedDict):
    """Per output token: its text, log probability, the most likely alternatives and
    where it starts in the choice's text."""

    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]]
    text_offset: list[int]


class CompletionChoice(TypedDict):
    text: str
    index: int
    logprobs: CompletionLogprobs | None
    finish_reason: FinishReason | None


class Completion(TypedDict):
    """`text_completion`: the whole answer, or one chunk of a streamed one (whose choices
    have a null `finish_reason` until their last). A chunk has `usage` only when the request
    set `stream_options.include_usage` (null but on the last chunk)."""

    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    system_fingerprint: str
    choices: list[CompletionChoice]
    usage: NotRequired[objects.CompletionUsage | None]
    obfuscation: NotRequired[str]


class Prompt(Field):
    """`prompt`: a string or an array of strings. Token-id prompts are refused: the
    contract carries text, and only the worker knows its model's tokenizer."""

    def check(self, value: Any) -> list[str]:
        if isinstance(value, str):
            return [value]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        if isinstance(value, list) and all(isinstance(v, int | list) for v in value):
            raise invalid(
                "Invalid 'prompt': token-id prompts are not supported; send the prompt as text.",
                self.param,
                "unsupported_parameter",
            )
        raise type_error(self.param, "a string or an array of strings", value)

    def schema(self) -> Schema:
        return {
            "description": self.description,
            "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
        }


COMPLETION_REQUEST = Body(
    "CreateCompletionRequest",
    "A legacy text completion request: OpenAI's schema, every documented parameter honoured "
    "or refused with a 400 naming it. Members OpenAI does not document are ignored.",
    [
        String("model", "The model to complete with.", required=True, example="sim-small"),
        Prompt("prompt", "The prompt, or several (token ids are refused).", required=True),
        Refused(
            "best_of",
            "Completions to generate server-side, returning the best.",
            "ask for `n` choices and pick among them",
            accepted=[1],
        ),
        Boolean("echo", "Start each choice with its prompt."),
        p.FREQUENCY_PENALTY,
        p.LOGIT_BIAS,
        Integer(
            "logprobs",
            "Return each token's log probability and this many most likely alternatives, 0 to 5.",
            0,
            UINT32_MAX,
        ),
        Integer("max_tokens", "Most tokens to generate; 16 when left out.", 1, UINT32_MAX),
        p.N,
        p.PRESENCE_PENALTY,
        p.SEED,
        p.STOP,
        Boolean("stream", "Stream the answer as server-sent events."),
        p.STREAM_OPTIONS,
        String("suffix", "Text that comes after the completion (insertion)."),
        p.TEMPERATURE,
        p.TOP_P,
        p.USER,
        p.PRIORITY,
    ],
    example={"model": "sim-small", "prompt": "Once upon a time", "max_tokens": 32},
)


@dataclass(frozen=True, slots=True)
class CompletionParams:
    """A text completion request of the right shape."""

    request: scheduler_pb2.CreateCompletionRequest
    stream: bool
    include_usage: bool
    obfuscate: bool
    choices: int  # prompts times n
    logprobs: bool


def parse_completion_request(raw: bytes) -> CompletionParams:
    """Shape-checks a /completions body and maps it onto the contract."""
    values = COMPLETION_REQUEST.parse(raw)
    sampling = p.sampling(values)
    limit = values["max_tokens"]
    sampling.max_tokens = DEFAULT_MAX_TOKENS if limit is None else limit
    if (alternatives := values["logprobs"]) is not None:
        sampling.logprobs, sampling.top_logprobs = True, alternatives
    prompt = chat_pb2.CompletionPrompt(
        prompts=values["prompt"], echo=values["echo"], suffix=values["suffix"] or ""
    )
    stream: bool = values["stream"]
    request = scheduler_pb2.CreateCompletionRequest(
        model=values["model"], prompt=prompt, sampling=sampling, user=values["user"] or ""
    )
    request.collect = not stream
    if (priority := values["priority"]) is not None:
        request.priority = priority
    options = p.checked_stream_options(values)
    return CompletionParams(
        request=request,
        stream=stream,
        include_usage=options["include_usage"],
        obfuscate=options["include_obfuscation"],
        choices=len(prompt.prompts) * sampling.n,
        logprobs=sampling.logprobs,
    )


def completion_logprobs(
    entries: Sequence[chat_pb2.TokenLogprob], text: str, start: int
) -> CompletionLogprobs:
    """The logprobs of the tokens that end `text`, which starts at `start` in its choice."""
    offset = start + max(0, len(text) - sum(len(e.token) for e in entries))
    out: CompletionLogprobs = {
        "tokens": [],
        "token_logprobs": [],
        "top_logprobs": [],
        "text_offset": [],
    }
    for entry in entries:
        out["tokens"].append(entry.token)
        out["token_logprobs"].append(entry.logprob)
        out["top_logprobs"].append({t.token: t.logprob for t in entry.top_logprobs})
        out["text_offset"].append(offset)
        offset += len(entry.token)
    return out


def _finish_reasons(finished: scheduler_pb2.CompletionFinished) -> dict[int, FinishReason]:
    reasons = objects.finish_reasons(finished).items()
    return {i: "stop" if reason == "tool_calls" else reason for i, reason in reasons}


def completion_id(started: scheduler_pb2.TaskStarted) -> str:
    return f"cmpl-{started.task_id}"


def completion_body(answer: Answer, logprobs: bool) -> bytes:
    """The non-streaming `text_completion` object, serialised."""
    started, reasons = answer.started, _finish_reasons(answer.finished)
    choices: list[CompletionChoice] = []
    for i, choice in enumerate(answer.choices):
        text = choice.content
        choices.append(
            {
                "text": text,
                "index": i,
                "logprobs": completion_logprobs(choice.logprobs, text, 0) if logprobs else None,
                "finish_reason": reasons.get(i, "stop"),
            }
        )
    body: Completion = {
        "id": completion_id(started),
        "object": "text_completion",
        "created": started.created,
        "model": started.model,
        "system_fingerprint": objects.fingerprint(started),
        "choices": choices,
        "usage": objects.completion_usage(answer.finished.usage),
    }
    return orjson.dumps(body)


class CompletionChunks:
    """Renders the `text_completion` SSE chunks of one streamed completion."""

    __slots__ = ("_choices", "_head", "_include_usage", "_lengths", "_obfuscate")

    def __init__(self, started: scheduler_pb2.TaskStarted, params: CompletionParams) -> None:
        self._head = {
            "id": completion_id(started),
            "object": "text_completion",
            "created": started.created,
            "model": started.model,
            "system_fingerprint": objects.fingerprint(started),
        }
        self._choices = params.choices
        self._include_usage = params.include_usage
        self._obfuscate = params.obfuscate
        self._lengths: dict[int, int] = {}  # characters of each choice sent so far

    def _event(
        self, choices: list[CompletionChoice], usage: objects.CompletionUsage | None = None
    ) -> bytes:
        chunk: dict[str, Any] = {**self._head, "choices": choices}
        if self._include_usage:
            chunk["usage"] = usage
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    def start(self) -> bytes:
        return b""  # text completions have no role chunk

    def delta(self, delta: scheduler_pb2.ContentDelta) -> bytes:
        start = self._lengths.get(delta.index, 0)
        self._lengths[delta.index] = start + len(delta.text)
        logprobs = (
            completion_logprobs(delta.logprobs, delta.text, start) if delta.logprobs else None
        )
        choice: CompletionChoice = {
            "text": delta.text,
            "index": delta.index,
            "logprobs": logprobs,
            "finish_reason": None,
        }
        chunk: dict[str, Any] = {**self._head, "choices": [choice]}
        if self._include_usage:
            chunk["usage"] = None
        if self._obfuscate:
            chunk["obfuscation"] = p.obfuscation(delta.text)
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    def finish(self, finished: scheduler_pb2.CompletionFinished) -> bytes:
        reasons = _finish_reasons(finished)
        out = [
            self._event(
                [
                    {
                        "text": "",
                        "index": i,
                        "logprobs": None,
                        "finish_reason": reasons.get(i, "stop"),
                    }
                ]
            )
            for i in range(self._choices)
        ]
        if self._include_usage:
            out.append(self._event([], objects.completion_usage(finished.usage)))
        out.append(b"data: [DONE]\n\n")
        return b"".join(out)
