"""OpenAI chat protocol without I/O: request shape -> proto, and response/chunk rendering.

The gateway checks the JSON's shape only (types, required fields, values the
contract can carry); every rule on the values (roles, bounds, lengths) is the
core's (gpucloud_server/servicers/validation.py), which answers INVALID_ARGUMENT
naming the `param` the way OpenAI does (`messages[0].role`), and so is what the
workers can do (tools, structured output, logprobs, media, context length).
Every parameter OpenAI documents is honoured or refused with a 400 naming it;
members it does not document (other servers' extensions) are ignored, as vLLM
ignores them, so clients written for those servers keep working.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from gpucloud.v1 import chat_pb2, scheduler_pb2
from gpucloud_gateway import openai_objects as objects
from gpucloud_gateway import openai_params as p
from gpucloud_gateway.chat_messages import MESSAGES
from gpucloud_gateway.choices import Answer
from gpucloud_gateway.fields import Body, Boolean, Flag, Integer, Refused, String
from gpucloud_gateway.validation import UINT32_MAX


@dataclass(frozen=True, slots=True)
class ChatParams:
    """A chat completion request of the right shape."""

    request: scheduler_pb2.CreateChatCompletionRequest
    stream: bool
    include_usage: bool
    obfuscate: bool
    n: int
    logprobs: bool


# The create-chat-completion body: `model` first, as it is the first thing checked, then the
# API reference's order. Every documented parameter is read: honoured, or refused by a 400
# naming it (`Refused`); members the reference does not document are ignored.
CHAT_REQUEST = Body(
    "CreateChatCompletionRequest",
    "A chat completion request: OpenAI's schema, every documented parameter honoured or "
    "refused with a 400 naming it. Members OpenAI does not document (other servers' "
    "extensions) are ignored.",
    [
        String("model", "The model to answer with.", required=True, example="sim-small"),
        MESSAGES,
        Refused("audio", "Audio output.", "gpucloud answers with text only"),
        p.FREQUENCY_PENALTY,
        Refused("function_call", "Legacy tool choice.", "deprecated; send 'tool_choice'"),
        Refused("functions", "Legacy tools.", "deprecated; send 'tools'"),
        p.LOGIT_BIAS,
        Boolean("logprobs", "Return the log probability of each output token."),
        Integer(
            "max_completion_tokens",
            "Most tokens to generate; wins over `max_tokens`.",
            1,
            UINT32_MAX,
        ),
        Integer("max_tokens", "Most tokens to generate (legacy name).", 1, UINT32_MAX),
        p.METADATA,
        Refused(
            "modalities",
            "Output modalities.",
            "gpucloud answers with text only",
            accepted=[["text"]],
        ),
        p.N,
        Flag("parallel_tool_calls", "Whether the model may call several tools at once."),
        Refused("prediction", "Predicted output.", "no backend takes a prediction"),
        p.PRESENCE_PENALTY,
        String(
            "prompt_cache_key",
            "A caching hint; accepted, as the scheduler already sends a prompt to the worker "
            "that holds its prefix.",
        ),
        Refused(
            "reasoning_effort",
            "How long a reasoning model thinks.",
            "the models do not reason",
            accepted=["none"],
        ),
        p.RESPONSE_FORMAT,
        String("safety_identifier", "An end-user id; stands for `user` when that is absent."),
        p.SEED,
        Refused(
            "service_tier",
            "The processing tier.",
            "gpucloud has one tier, its queue priorities aside",
            accepted=["auto", "default"],
        ),
        p.STOP,
        Refused(
            "store",
            "Keep the completion for later retrieval.",
            "gpucloud keeps no completions",
            accepted=[False],
        ),
        Boolean("stream", "Stream the answer as server-sent events."),
        p.STREAM_OPTIONS,
        p.TEMPERATURE,
        p.ToolChoice("tool_choice", "Whether and which tool the model must call."),
        p.TOOLS,
        Integer("top_logprobs", "With `logprobs`: alternatives per token, 0 to 20.", 0, UINT32_MAX),
        p.TOP_P,
        p.USER,
        Refused("verbosity", "How long the answer is.", "no backend takes it", accepted=["medium"]),
        Refused("web_search_options", "Web search.", "gpucloud has no web search"),
        p.PRIORITY,
    ],
    example={
        "model": "sim-small",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Write a haiku about GPUs."},
        ],
        "max_tokens": 64,
        "temperature": 0.7,
        "stream": False,
    },
)


def _sampling(values: dict[str, Any]) -> chat_pb2.SamplingParams:
    sampling = p.sampling(values)
    # The contract reads 0 as "the default", so an explicit 0 cannot travel: refused as < 1.
    limit = values["max_completion_tokens"]
    if limit is None:
        limit = values["max_tokens"]
    sampling.max_tokens = limit or 0
    sampling.logprobs = values["logprobs"]
    if (top := values["top_logprobs"]) is not None:
        sampling.top_logprobs = top
    return sampling


def parse_chat_request(raw: bytes) -> ChatParams:
    """Shape-checks a /chat/completions body and maps it onto the contract."""
    values = CHAT_REQUEST.parse(raw)
    request = scheduler_pb2.CreateChatCompletionRequest(
        model=values["model"],
        messages=values["messages"],
        sampling=_sampling(values),
        user=values["user"] or values["safety_identifier"] or "",
    )
    if tools := values["tools"]:  # the rest only when given: most requests set none of it
        request.tools.extend(tools)
    if metadata := values["metadata"]:
        request.metadata.update(metadata)
    if (priority := values["priority"]) is not None:
        request.priority = priority
    if (choice := values["tool_choice"]) is not None:
        request.tool_choice.CopyFrom(choice)
    if (parallel := values["parallel_tool_calls"]) is not None:
        request.parallel_tool_calls = parallel
    if (response_format := values["response_format"]) is not None:
        request.response_format.CopyFrom(response_format)
    stream: bool = values["stream"]
    options = p.checked_stream_options(values)
    request.collect = not stream  # a whole answer travels from the core as one message
    return ChatParams(
        request=request,
        stream=stream,
        include_usage=options["include_usage"],
        obfuscate=options["include_obfuscation"],
        n=request.sampling.n,
        logprobs=request.sampling.logprobs,
    )


def completion_body(answer: Answer, logprobs: bool) -> bytes:
    """The non-streaming `chat.completion` object, serialised."""
    return orjson.dumps(objects.chat_completion(answer, logprobs))


class ChunkRenderer:
    """Renders the `chat.completion.chunk` SSE events of one completion."""

    __slots__ = ("_created", "_fingerprint", "_id", "_include_usage", "_model", "_n", "_obfuscate")

    def __init__(self, started: scheduler_pb2.TaskStarted, params: ChatParams) -> None:
        self._id = objects.completion_id(started)
        self._created = started.created
        self._model = started.model
        self._fingerprint = objects.fingerprint(started)
        self._n = params.n
        self._include_usage = params.include_usage
        self._obfuscate = params.obfuscate

    def _event(
        self, choices: list[objects.ChunkChoice], usage: objects.CompletionUsage | None = None
    ) -> bytes:
        chunk = objects.chat_completion_chunk(
            self._id,
            self._created,
            self._model,
            self._fingerprint,
            choices,
            self._include_usage,
            usage,
        )
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    def start(self) -> bytes:
        """The first chunk of each choice: the assistant role. No content yet: an answer of
        tool calls alone has null content, which the SDKs keep only if none was sent."""
        return b"".join(
            self._event([objects.chunk_choice(i, {"role": "assistant"}, None)])
            for i in range(self._n)
        )

    def delta(self, delta: scheduler_pb2.ContentDelta) -> bytes:
        """One piece of output: the hot path, so plain text skips the general builders."""
        if delta.tool_calls or delta.logprobs or self._obfuscate:
            return self._rich(delta)
        chunk = objects.chat_completion_chunk(
            self._id,
            self._created,
            self._model,
            self._fingerprint,
            [objects.chunk_choice(delta.index, {"content": delta.text}, None)],
            self._include_usage,
        )
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    def _rich(self, delta: scheduler_pb2.ContentDelta) -> bytes:
        logprobs = objects.choice_logprobs(delta.logprobs) if delta.logprobs else None
        choice = objects.chunk_choice(delta.index, objects.choice_delta(delta), None, logprobs)
        chunk = objects.chat_completion_chunk(
            self._id,
            self._created,
            self._model,
            self._fingerprint,
            [choice],
            self._include_usage,
        )
        if self._obfuscate:
            chunk["obfuscation"] = p.obfuscation(delta.text)
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    def finish(self, finished: scheduler_pb2.CompletionFinished) -> bytes:
        """Finish chunks, the usage chunk when asked for, and `[DONE]`."""
        reasons = objects.finish_reasons(finished)
        out = [
            self._event([objects.chunk_choice(i, {}, reasons.get(i, "stop"))])
            for i in range(self._n)
        ]
        if self._include_usage:
            out.append(self._event([], objects.completion_usage(finished.usage)))
        out.append(b"data: [DONE]\n\n")
        return b"".join(out)
