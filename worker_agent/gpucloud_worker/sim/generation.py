"""A request as the sim runs it: its prompts (tokens, prefix-cache keys) and one Choice
per answer, each with what its tokens will be: text, JSON or tool calls.

Everything is drawn from seeds derived from the request's seed, model, prompt and
choice index (text.text_seed), so a request with a seed replays exactly.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from itertools import chain

from gpucloud_common.tokens import text_tokens
from gpucloud_worker.backend import (
    BackendError,
    CompletionPrompt,
    ErrorKind,
    FinishReason,
    GenerationRequest,
    ResponseFormat,
)
from gpucloud_worker.sim.choice import Choice, Echo
from gpucloud_worker.sim.logprobs import Logprobs
from gpucloud_worker.sim.prefix import block_keys, chat_pieces, text_pieces
from gpucloud_worker.sim.scalars import prompt_words
from gpucloud_worker.sim.schema_values import SchemaError, instance
from gpucloud_worker.sim.sources import ScriptSource, Source, TextSource, text_tokens_of
from gpucloud_worker.sim.text import PARAGRAPH_BREAK, TextStream, count_prompt_tokens, text_seed
from gpucloud_worker.sim.tools import call_tokens, last_user_text, tools_to_call

# A json_object answer without a schema is {"answer": ...} with this many sentences.
JSON_ANSWER_SENTENCES = 2


@dataclass(frozen=True, slots=True)
class PromptRun:
    """One prompt on the engine: its tokens, its full blocks' keys, and its choices."""

    tokens: int
    keys: tuple[int, ...]
    choices: tuple[Choice, ...]


def plan(request: GenerationRequest, model_id: str, base_seed: int) -> tuple[PromptRun, ...]:
    """The prompts of `request` and their choices: one prompt for a chat, one per prompt
    for a text completion (choice p*n+j being prompt p's jth)."""
    if request.completion is not None:
        return _completion(request, request.completion, model_id, base_seed)
    prompt = "\x1e".join(f"{message.role}:{message.content}" for message in request.messages)
    keys = block_keys(model_id, chat_pieces(request.messages, request.tools))
    choices = (_chat_choice(request, i, (base_seed, model_id, prompt, i)) for i in range(request.n))
    return (PromptRun(count_prompt_tokens(request.messages, request.tools), keys, tuple(choices)),)


def first_prompt_keys(request: GenerationRequest, model_id: str) -> tuple[int, ...]:
    """The prefix-cache keys of the request's (first) prompt."""
    completion = request.completion
    if completion is None:
        return block_keys(model_id, chat_pieces(request.messages, request.tools))
    first = completion.prompts[0] if completion.prompts else ""
    return block_keys(model_id, chain(text_pieces(first), text_pieces(completion.suffix)))


def _chat_choice(request: GenerationRequest, index: int, seed: tuple[object, ...]) -> Choice:
    rng = random.Random(text_seed(*seed, "structure"))
    stream = _stream(request, seed)
    calls = tools_to_call(request, rng)
    source: Source
    if calls:
        source = ScriptSource(call_tokens(calls, rng, request.messages), FinishReason.TOOL_CALLS)
    elif request.response_format is not None and request.response_format.type != "text":
        content = _json_content(request, request.response_format, rng, stream)
        source = ScriptSource(text_tokens_of(content), FinishReason.STOP)
    else:
        source = TextSource(stream, natural=request.max_tokens == 0)
    return Choice(index, source, request.stop, logprobs=_logprobs(request, seed))


def _completion(
    request: GenerationRequest, completion: CompletionPrompt, model_id: str, base_seed: int
) -> tuple[PromptRun, ...]:
    if not completion.prompts:
        raise BackendError(
            ErrorKind.INVALID_REQUEST, "a completion needs a prompt", {"param": "prompt"}
        )
    runs = []
    suffix = completion.suffix  # the text after the insertion point: read as prompt
    for p, prompt in enumerate(completion.prompts):
        keys = block_keys(model_id, chain(text_pieces(prompt), text_pieces(suffix)))
        choices = []
        for j in range(request.n):
            index = p * request.n + j
            seed = (base_seed, model_id, prompt + suffix, index)
            logprobs = _logprobs(request, seed)
            echo = None
            if completion.echo:
                scored = () if logprobs is None else tuple(map(logprobs.of, text_pieces(prompt)))
                echo = Echo(prompt, scored)
            continues = bool(prompt) and not prompt[-1].isspace()
            stream = _stream(request, seed, continues=continues)
            source = TextSource(stream, natural=request.max_tokens == 0)
            choices.append(Choice(index, source, request.stop, logprobs=logprobs, echo=echo))
        tokens = text_tokens(prompt) + text_tokens(suffix)
        runs.append(PromptRun(tokens, keys, tuple(choices)))
    return tuple(runs)


def _stream(
    request: GenerationRequest, seed: tuple[object, ...], *, continues: bool = False
) -> TextStream:
    penalties = (request.presence_penalty or 0.0, request.frequency_penalty or 0.0)
    return TextStream(text_seed(*seed), *penalties, continues=continues)


def _logprobs(request: GenerationRequest, seed: tuple[object, ...]) -> Logprobs | None:
    if not request.logprobs:
        return None
    return Logprobs(text_seed(*seed, "logprobs"), request.top_logprobs)


def _json_content(
    request: GenerationRequest,
    response_format: ResponseFormat,
    rng: random.Random,
    stream: TextStream,
) -> str:
    """The answer as JSON: an instance of the schema, or {"answer": a few sentences}."""
    if response_format.type != "json_schema":
        return json.dumps({"answer": _sentences(stream, JSON_ANSWER_SENTENCES)}, ensure_ascii=False)
    words = prompt_words(last_user_text(request.messages))
    try:
        value = instance(response_format.schema or {}, rng, words)
    except SchemaError as error:
        raise BackendError(
            ErrorKind.INVALID_REQUEST,
            f"response_format's schema admits no value the sim can write: {error}",
            {"param": "response_format"},
        ) from None
    return json.dumps(value, ensure_ascii=False)


def _sentences(stream: TextStream, count: int) -> str:
    words: list[str] = []
    while count > 0:
        token = stream.next_token()
        words.append(" " if token == PARAGRAPH_BREAK else token)
        count -= token.endswith((".", "!", "?"))
    return "".join(words).strip()
