"""Between the contract and the backend interface: an assignment as a backend request,
a backend's output as TaskChunk / TaskDone."""

from __future__ import annotations

import json
from typing import Any

from gpucloud.v1 import chat_pb2, worker_pb2
from gpucloud_worker.backend import (
    NO_TOOLS,
    Chunk,
    CompletionPrompt,
    EmbeddingRequest,
    Embeddings,
    Finish,
    FinishReason,
    GenerationRequest,
    Message,
    ResponseFormat,
    Tool,
    ToolCall,
    ToolChoice,
)

DEFAULT_MAX_TOKENS = 0  # the backend picks a natural length
FINISH = {
    FinishReason.STOP: chat_pb2.FINISH_REASON_STOP,
    FinishReason.LENGTH: chat_pb2.FINISH_REASON_LENGTH,
    FinishReason.TOOL_CALLS: chat_pb2.FINISH_REASON_TOOL_CALLS,
    FinishReason.CONTENT_FILTER: chat_pb2.FINISH_REASON_CONTENT_FILTER,
}
_TOOL_CHOICE_MODES = {
    chat_pb2.TOOL_CHOICE_MODE_NONE: "none",
    chat_pb2.TOOL_CHOICE_MODE_AUTO: "auto",
    chat_pb2.TOOL_CHOICE_MODE_REQUIRED: "required",
    chat_pb2.TOOL_CHOICE_MODE_FUNCTION: "function",
}
_FORMATS = {
    chat_pb2.RESPONSE_FORMAT_TYPE_TEXT: "text",
    chat_pb2.RESPONSE_FORMAT_TYPE_JSON_OBJECT: "json_object",
    chat_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA: "json_schema",
}


def _schema(text: str) -> dict[str, Any]:
    """A JSON Schema the core checked to be a JSON object."""
    return json.loads(text) if text else {}


def _message(m: chat_pb2.ChatMessage) -> Message:
    return Message(
        m.role,
        m.content,
        m.name,
        tuple(ToolCall(c.id, c.name, c.arguments) for c in m.tool_calls),
        m.tool_call_id,
        m.refusal,
    )


def _tool_choice(a: worker_pb2.TaskAssignment) -> ToolChoice:
    mode = _TOOL_CHOICE_MODES.get(a.tool_choice.mode)
    if mode is None:  # not given: OpenAI's default
        return ToolChoice("auto") if a.tools else NO_TOOLS
    return ToolChoice(mode, a.tool_choice.function)


def _response_format(f: chat_pb2.ResponseFormat) -> ResponseFormat | None:
    kind = _FORMATS.get(f.type)
    if kind is None:
        return None
    schema = _schema(f.schema_json) if kind == "json_schema" else None
    return ResponseFormat(kind, f.name, schema, f.strict if f.HasField("strict") else None)


def generation_request(a: worker_pb2.TaskAssignment) -> GenerationRequest:
    s = a.sampling
    completion = None
    if a.HasField("completion"):
        c = a.completion
        completion = CompletionPrompt(tuple(c.prompts), c.echo, c.suffix)
    return GenerationRequest(
        task_id=a.task_id,
        model=a.model,
        messages=tuple(_message(m) for m in a.messages),
        max_tokens=s.max_tokens or DEFAULT_MAX_TOKENS,
        temperature=s.temperature if s.HasField("temperature") else None,
        top_p=s.top_p if s.HasField("top_p") else None,
        stop=tuple(s.stop),
        seed=s.seed if s.HasField("seed") else None,
        n=s.n or 1,
        tools=tuple(
            Tool(
                t.name,
                t.description,
                _schema(t.parameters_json),
                t.strict if t.HasField("strict") else None,
            )
            for t in a.tools
        ),
        tool_choice=_tool_choice(a),
        parallel_tool_calls=a.parallel_tool_calls if a.HasField("parallel_tool_calls") else True,
        response_format=_response_format(a.response_format),
        presence_penalty=s.presence_penalty if s.HasField("presence_penalty") else None,
        frequency_penalty=s.frequency_penalty if s.HasField("frequency_penalty") else None,
        logit_bias=dict(s.logit_bias),
        logprobs=s.logprobs,
        top_logprobs=s.top_logprobs,
        completion=completion,
    )


def embedding_request(a: worker_pb2.TaskAssignment) -> EmbeddingRequest:
    return EmbeddingRequest(
        task_id=a.task_id,
        model=a.model,
        inputs=tuple(i.text if not i.token_ids else tuple(i.token_ids) for i in a.embedding_inputs),
        dimensions=a.embedding_dimensions or None,
    )


def chunk(task_id: str, attempt: int, c: Chunk) -> worker_pb2.TaskChunk:
    out = worker_pb2.TaskChunk(
        task_id=task_id,
        attempt=attempt,
        index=c.index,
        text=c.text,
        tokens=c.tokens,
        prompt_tokens=c.prompt_tokens,
    )
    # Plain text is the hot path: the repeated fields are touched only when there is more.
    if c.tool_calls:
        out.tool_calls.extend(
            chat_pb2.ToolCallDelta(index=t.index, id=t.id, name=t.name, arguments=t.arguments)
            for t in c.tool_calls
        )
    if c.logprobs:
        out.logprobs.extend(
            chat_pb2.TokenLogprob(
                token=lp.token,
                logprob=lp.logprob,
                top_logprobs=[
                    chat_pb2.TopLogprob(token=t.token, logprob=t.logprob) for t in lp.top
                ],
            )
            for lp in c.logprobs
        )
    return out


def _usage(prompt_tokens: int, completion_tokens: int, cached_tokens: int) -> chat_pb2.Usage:
    return chat_pb2.Usage(
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=prompt_tokens + completion_tokens,
        prompt_tokens_details=chat_pb2.PromptTokensDetails(
            cached_tokens=max(0, min(cached_tokens, prompt_tokens))
        ),
    )


def done(task_id: str, attempt: int, finish: Finish) -> worker_pb2.TaskDone:
    return worker_pb2.TaskDone(
        task_id=task_id,
        attempt=attempt,
        choices=[
            chat_pb2.ChoiceFinish(index=i, reason=FINISH[r]) for i, r in enumerate(finish.reasons)
        ],
        usage=_usage(finish.prompt_tokens, finish.completion_tokens, finish.cached_tokens),
    )


def embedded(task_id: str, attempt: int, embeddings: Embeddings) -> worker_pb2.TaskDone:
    return worker_pb2.TaskDone(
        task_id=task_id,
        attempt=attempt,
        usage=_usage(embeddings.prompt_tokens, 0, 0),
        embeddings=[
            chat_pb2.Embedding(index=i, values=vector)
            for i, vector in enumerate(embeddings.vectors)
        ],
    )
