"""The openai backend's requests to its upstream: a task as an OpenAI request body.

Only what the task sets is sent, defaults left out: upstreams differ in what they
accept (some refuse `parallel_tool_calls`, or a `dimensions` for a model that has
but one), and a default is what they do anyway.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from gpucloud_common.tokens import text_tokens, tool_call_text, tools_text
from gpucloud_worker.backend import (
    CompletionPrompt,
    EmbeddingRequest,
    GenerationRequest,
    Message,
    ResponseFormat,
    Tool,
    ToolChoice,
)


def chat_body(request: GenerationRequest) -> dict[str, Any]:
    """POST /chat/completions: the task's conversation and parameters, streamed with usage."""
    body: dict[str, Any] = {
        "model": request.model,
        "messages": [_message(m) for m in request.messages],
        **_streamed(),
        **_sampling(request),
    }
    if request.tools:
        body["tools"] = [_tool(t) for t in request.tools]
    choice = _tool_choice(request.tool_choice, bool(request.tools))
    if choice is not None:
        body["tool_choice"] = choice
    if request.tools and not request.parallel_tool_calls:
        body["parallel_tool_calls"] = False
    if request.response_format is not None and request.response_format.type != "text":
        body["response_format"] = _response_format(request.response_format)
    if request.logprobs:
        body["logprobs"] = True
        if request.top_logprobs:
            body["top_logprobs"] = request.top_logprobs
    return body


def completion_body(
    request: GenerationRequest, completion: CompletionPrompt, prompt: str
) -> dict[str, Any]:
    """POST /completions: one of the completion's prompts, and the task's parameters."""
    body: dict[str, Any] = {
        "model": request.model,
        "prompt": prompt,
        **_streamed(),
        **_sampling(request),
    }
    if upstream_echoes(request):
        body["echo"] = True
    if completion.suffix:
        body["suffix"] = completion.suffix
    if request.logprobs:
        body["logprobs"] = request.top_logprobs  # the legacy form: how many alternatives
    return body


def upstream_echoes(request: GenerationRequest) -> bool:
    """Whether the upstream is asked to echo the prompt: only with logprobs, for the
    prompt's logprobs (lm-eval's loglikelihood); else the worker echoes it (Echo), as
    some upstreams do not when streaming."""
    return request.completion is not None and request.completion.echo and request.logprobs


def embeddings_body(request: EmbeddingRequest, native_dimensions: int) -> dict[str, Any]:
    """POST /embeddings. `dimensions` goes only where it asks for other than the model's
    own length: vLLM refuses it, even equal, for a model that has one length only."""
    body: dict[str, Any] = {
        "model": request.model,
        "input": [i if isinstance(i, str) else list(i) for i in request.inputs],
        "encoding_format": "float",
    }
    if request.dimensions is not None and request.dimensions != native_dimensions:
        body["dimensions"] = request.dimensions
    return body


def estimate_prompt_tokens(messages: Sequence[Message], tools: Sequence[Tool] = ()) -> int:
    """Prompt tokens when the upstream reports none.

    About 4 characters per token for English text, plus 3 tokens of chat framing
    per message and 3 to prime the reply (OpenAI's published rules of thumb); tool
    calls count as their name and arguments, tool definitions as one more message.
    """
    texts = [
        m.content + "".join(tool_call_text(c.name, c.arguments) for c in m.tool_calls)
        for m in messages
    ]
    if tools:
        texts.append(tools_text((t.name, t.description, t.parameters) for t in tools))
    return 3 + sum(3 + math.ceil(len(text) / 4) for text in texts)


def estimate_completion_prompt_tokens(completion: CompletionPrompt) -> int:
    """A text completion's prompt tokens when the upstream reports none."""
    return sum(text_tokens(p) for p in completion.prompts)


def _streamed() -> dict[str, Any]:
    return {"stream": True, "stream_options": {"include_usage": True}}


def _sampling(request: GenerationRequest) -> dict[str, Any]:
    """The parameters chat and text completions share, those set only."""
    optional = {
        "max_tokens": request.max_tokens or None,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "seed": request.seed,
        "stop": list(request.stop) or None,
        "n": request.n if request.n != 1 else None,
        "presence_penalty": request.presence_penalty,
        "frequency_penalty": request.frequency_penalty,
        # JSON object keys are text: the token ids as decimal strings, as OpenAI takes them.
        "logit_bias": {str(t): b for t, b in request.logit_bias.items()} or None,
    }
    return {k: v for k, v in optional.items() if v is not None}


def _message(m: Message) -> dict[str, Any]:
    message: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.name:
        message["name"] = m.name
    if m.tool_calls:
        # An assistant turn that only calls tools keeps its empty content: "", not the
        # null OpenAI writes, which llama-cpp-python refuses (and a missing one fails it).
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in m.tool_calls
        ]
    if m.tool_call_id:
        message["tool_call_id"] = m.tool_call_id
    return message


def _tool(t: Tool) -> dict[str, Any]:
    function: dict[str, Any] = {"name": t.name}
    if t.description:
        function["description"] = t.description
    if t.parameters:
        function["parameters"] = dict(t.parameters)
    if t.strict is not None:
        function["strict"] = t.strict
    return {"type": "function", "function": function}


def _tool_choice(choice: ToolChoice, has_tools: bool) -> str | dict[str, Any] | None:
    """None where the upstream's default is the same: "auto" with tools, "none" without."""
    if choice.mode == "function":
        return {"type": "function", "function": {"name": choice.function}}
    if choice.mode == ("auto" if has_tools else "none"):
        return None
    return choice.mode


def _response_format(f: ResponseFormat) -> dict[str, Any]:
    if f.type != "json_schema":
        return {"type": f.type}
    spec: dict[str, Any] = {"name": f.name or "response"}
    if f.schema is not None:
        spec["schema"] = dict(f.schema)
    if f.strict is not None:
        spec["strict"] = f.strict
    return {"type": "json_schema", "json_schema": spec}
