"""The openai backend relays what its upstream streams back: tool calls, logprobs, finish
reasons, echoed prompts; and its refusals, as the client's fault with their message."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from fake_upstream import FakeUpstream, delta, drop, piece, sse, status

from gpucloud_worker.backend import (
    BackendError,
    Chunk,
    CompletionPrompt,
    EmbeddingRequest,
    ErrorKind,
    Finish,
    FinishReason,
    GenerationRequest,
    Message,
    TokenLogprob,
    Tool,
    ToolCallDelta,
    TopLogprob,
)
from gpucloud_worker.nvml import Nvml
from gpucloud_worker.openai_backend import OpenAIBackend, estimate_prompt_tokens
from gpucloud_worker.openai_errors import validation_errors

HELLO = (Message("user", "hello"),)
PROMPT_ESTIMATE = estimate_prompt_tokens(HELLO)


@pytest.fixture
async def backend(upstream: FakeUpstream) -> AsyncIterator[OpenAIBackend]:
    backend = OpenAIBackend(
        f"http://127.0.0.1:{upstream.port}/v1",
        embedding_models={"embed": 0},
        read_timeout=0.5,
        nvml=Nvml(None, ()),
    )
    await backend.start()
    yield backend
    await backend.close()


def task(**options: Any) -> GenerationRequest:
    return GenerationRequest("t1", "m", HELLO, max_tokens=16, **options)


def completion(*prompts: str, echo: bool = False, **options: Any) -> GenerationRequest:
    prompt = CompletionPrompt(prompts, echo=echo)
    return GenerationRequest("t1", "m", (), max_tokens=16, completion=prompt, **options)


async def run(backend: OpenAIBackend, request: GenerationRequest) -> list[Chunk | Finish]:
    return [item async for item in backend.generate(request)]


async def failure(backend: OpenAIBackend, request: GenerationRequest) -> BackendError:
    with pytest.raises(BackendError) as caught:
        await run(backend, request)
    return caught.value


def call(index: int, arguments: str, id: str = "", name: str = "") -> dict[str, Any]:
    function = {"arguments": arguments, **({"name": name} if name else {})}
    return {"index": index, **({"id": id, "type": "function"} if id else {}), "function": function}


async def test_tool_call_pieces_are_relayed_by_index(
    backend: OpenAIBackend, upstream: FakeUpstream
) -> None:
    """Two parallel calls, as vLLM and OpenAI stream them: id and name first, then arguments."""
    upstream.chat = sse(
        delta("", tool_calls=[call(0, "", "call_a", "weather")]),
        delta("", tool_calls=[call(0, '{"city":')]),
        delta("", tool_calls=[call(1, '{"city":"Rome"}', "call_b", "weather")]),
        delta("", tool_calls=[call(0, '"Oslo"}')], finish="tool_calls"),
    )
    tools = (Tool("weather"),)
    items = await run(backend, task(tools=tools))
    assert [c.tool_calls for c in items if isinstance(c, Chunk)] == [
        (ToolCallDelta(0, "call_a", "weather", ""),),
        (ToolCallDelta(0, "", "", '{"city":'),),
        (ToolCallDelta(1, "call_b", "weather", '{"city":"Rome"}'),),
        (ToolCallDelta(0, "", "", '"Oslo"}'),),
    ]
    assert all(c.text == "" and c.tokens == 1 for c in items if isinstance(c, Chunk))
    assert items[-1] == Finish(
        (FinishReason.TOOL_CALLS,), estimate_prompt_tokens(HELLO, tools), completion_tokens=4
    )


async def test_an_id_and_name_repeated_in_every_piece_are_relayed_once(
    backend: OpenAIBackend, upstream: FakeUpstream
) -> None:
    """llama-cpp-python repeats both in each piece, and the deprecated function_call too."""
    repeated = call(0, "{", "call_x", "ok")

    def both(tool_call: dict[str, Any]) -> dict[str, Any]:
        event = delta("", tool_calls=[tool_call])
        event["choices"][0]["delta"]["function_call"] = tool_call["function"]
        return event

    upstream.chat = sse(
        both(repeated), both({**repeated, "function": {"name": "ok", "arguments": "}"}}),
        delta("", finish="tool_calls"),
    )  # fmt: skip
    items = await run(backend, task(tools=(Tool("ok"),)))
    assert [c.tool_calls for c in items if isinstance(c, Chunk)] == [
        (ToolCallDelta(0, "call_x", "ok", "{"),),
        (ToolCallDelta(0, "", "", "}"),),
    ]


async def test_a_deprecated_function_call_is_relayed_as_tool_call_zero(
    backend: OpenAIBackend, upstream: FakeUpstream
) -> None:
    event = delta("")
    event["choices"][0]["delta"]["function_call"] = {"name": "ok", "arguments": "{}"}
    upstream.chat = sse(event, delta("", finish="function_call"))
    items = await run(backend, task())
    assert items[0] == Chunk(0, "", 1, PROMPT_ESTIMATE, (ToolCallDelta(0, "", "ok", "{}"),))
    assert items[-1].reasons == (FinishReason.TOOL_CALLS,)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("upstream_reason", "reason"),
    [
        ("stop", FinishReason.STOP),
        ("length", FinishReason.LENGTH),
        ("tool_calls", FinishReason.TOOL_CALLS),
        ("function_call", FinishReason.TOOL_CALLS),
        ("content_filter", FinishReason.CONTENT_FILTER),
        ("abort", FinishReason.STOP),  # what no client knows: the text simply ends
    ],
)
async def test_finish_reasons(
    backend: OpenAIBackend, upstream: FakeUpstream, upstream_reason: str, reason: FinishReason
) -> None:
    upstream.chat = sse(delta("a", finish=upstream_reason))
    *_, finish = await run(backend, task())
    assert finish.reasons == (reason,)  # type: ignore[union-attr]


async def test_chat_logprobs_are_relayed_per_token_with_the_alternatives_asked_for(
    backend: OpenAIBackend, upstream: FakeUpstream
) -> None:
    def logprobs(*tokens: tuple[str, float, list[tuple[str, float]]]) -> dict[str, Any]:
        content = [
            {"token": t, "logprob": lp, "bytes": None,
             "top_logprobs": [{"token": a, "logprob": b, "bytes": None} for a, b in top]}
            for t, lp, top in tokens
        ]  # fmt: skip
        return {"content": content, "refusal": None}

    upstream.chat = sse(
        # Unranked, and one more than asked for (llama-cpp-python adds the sampled token's).
        delta("Hi", logprobs=logprobs(("Hi", -0.1, [("Hey", -2.5), ("Hi", -0.1), ("Yo", -4.0)]))),
        delta(" there", logprobs=logprobs((" the", -0.5, []), ("re", -0.01, []))),
        delta("", finish="stop"),
    )
    chunks = [
        c for c in await run(backend, task(logprobs=True, top_logprobs=2)) if isinstance(c, Chunk)
    ]
    assert [c.logprobs for c in chunks] == [
        (TokenLogprob("Hi", -0.1, (TopLogprob("Hi", -0.1), TopLogprob("Hey", -2.5))),),
        (TokenLogprob(" the", -0.5), TokenLogprob("re", -0.01)),
    ]
    assert [c.tokens for c in chunks] == [1, 2]  # a delta holds as many tokens as it has logprobs


def legacy_logprobs(offset: int, *tokens: tuple[str, float | None, dict[str, float] | None]) -> Any:
    """A text completion's logprobs: parallel lists, alternatives as {token: logprob}."""
    offsets, at = [], offset
    for token, _, _ in tokens:
        offsets.append(at)
        at += len(token)
    return {
        "tokens": [t for t, _, _ in tokens],
        "token_logprobs": [lp for _, lp, _ in tokens],
        "top_logprobs": [top for _, _, top in tokens],
        "text_offset": offsets,
    }


async def test_text_completion_logprobs_rank_the_alternatives(
    backend: OpenAIBackend, upstream: FakeUpstream
) -> None:
    alternatives = {" dog": -1.5, " cat": -1.0, " a": -3.0}
    upstream.completions = sse(
        piece(" cat", logprobs=legacy_logprobs(4, (" cat", -1.0, alternatives))),
        piece("", finish="length"),
    )
    items = await run(backend, completion("The ", logprobs=True, top_logprobs=3))
    ranked = (TopLogprob(" cat", -1.0), TopLogprob(" dog", -1.5), TopLogprob(" a", -3.0))
    assert items[0] == Chunk(0, " cat", 1, 1, logprobs=(TokenLogprob(" cat", -1.0, ranked),))
    assert items[-1] == Finish((FinishReason.LENGTH,), 1, 1)


async def test_echo_without_logprobs_is_the_workers(
    backend: OpenAIBackend, upstream: FakeUpstream
) -> None:
    """Not asked of the upstream (llama-cpp-python ignores it when streaming): the prompt
    starts each choice, worth no generated tokens."""
    upstream.completions = sse(
        piece("A", 0), piece("B", 1), piece("", 0, "stop"), piece("", 1, "stop")
    )
    items = await run(backend, completion("Say:", echo=True, n=2))
    assert "echo" not in upstream.requests[-1][2]
    assert [(c.index, c.text, c.tokens) for c in items if isinstance(c, Chunk)] == [
        (0, "Say:", 0), (0, "A", 1), (1, "Say:", 0), (1, "B", 1),
    ]  # fmt: skip
    assert items[-1] == Finish((FinishReason.STOP, FinishReason.STOP), 1, 2)


async def test_echo_of_a_choice_that_ends_at_once_is_its_prompt(
    backend: OpenAIBackend, upstream: FakeUpstream
) -> None:
    upstream.completions = sse(piece("", 0, "stop"))
    items = await run(backend, completion("Say:", echo=True))
    assert items[0] == Chunk(0, "Say:", 0, prompt_tokens=1)


async def test_echo_with_logprobs_is_the_upstreams_with_the_prompts_logprobs(
    backend: OpenAIBackend, upstream: FakeUpstream
) -> None:
    """As vLLM streams it: the prompt and the first token in one piece; only the first
    prompt token lacks a logprob (null)."""
    first = legacy_logprobs(
        0, ("Say", None, None), (":", -2.0, {":": -2.0}), (" hi", -0.5, {" hi": -0.5})
    )
    upstream.completions = sse(
        piece("Say: hi", logprobs=first),
        piece("!", logprobs=legacy_logprobs(7, ("!", -0.1, {"!": -0.1}))),
        piece("", finish="length"),
    )  # fmt: skip
    items = await run(backend, completion("Say:", echo=True, logprobs=True, top_logprobs=1))
    assert upstream.requests[-1][2]["echo"] is True
    chunks = [c for c in items if isinstance(c, Chunk)]
    assert [(c.text, c.tokens) for c in chunks] == [("Say: hi", 1), ("!", 1)]
    assert chunks[0].logprobs[0] == TokenLogprob("Say", 0.0)
    assert items[-1] == Finish((FinishReason.LENGTH,), 1, 2)


async def test_echo_with_logprobs_that_the_upstream_ignores_is_the_workers(
    backend: OpenAIBackend, upstream: FakeUpstream
) -> None:
    """llama-cpp-python streaming: no prompt, the first token's offset past it."""
    upstream.completions = sse(
        piece("S", logprobs=legacy_logprobs(4, ("S", -0.3, {"S": -0.3}))),
        piece("", finish="length"),
    )
    items = await run(backend, completion("Say:", echo=True, logprobs=True))
    assert [(c.text, c.tokens) for c in items if isinstance(c, Chunk)] == [("Say:", 0), ("S", 1)]


async def test_usage_of_each_prompts_request_adds_up(
    backend: OpenAIBackend, upstream: FakeUpstream
) -> None:
    usage = {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}
    upstream.completions = sse(piece("ab", finish="stop"), usage)
    *_, finish = await run(backend, completion("one", "two"))
    assert finish == Finish((FinishReason.STOP, FinishReason.STOP), 6, 4)


async def test_upstream_refusal_reaches_the_client_with_its_message_code_and_param(
    backend: OpenAIBackend, upstream: FakeUpstream
) -> None:
    upstream.chat = status(400, {"error": {
        "message": "'tool_choice' names no tool", "type": "invalid_request_error",
        "param": "tool_choice", "code": "invalid_value",
    }})  # fmt: skip
    error = await failure(backend, task())
    assert (error.kind, error.message) == (ErrorKind.INVALID_REQUEST, "'tool_choice' names no tool")
    assert error.details == {
        "code": "invalid_value",
        "param": "tool_choice",
        "upstream_status": "400",
    }


async def test_a_422_names_the_fields_it_refused(
    backend: OpenAIBackend, upstream: FakeUpstream
) -> None:
    upstream.chat = status(422, {"detail": [
        {"type": "literal_error", "loc": ["body", "response_format", "type"],
         "msg": "Input should be 'text' or 'json_object'", "input": "json_schema"},
    ]})  # fmt: skip
    error = await failure(backend, task())
    assert error.kind is ErrorKind.INVALID_REQUEST
    assert error.message == "response_format.type: Input should be 'text' or 'json_object'"
    assert error.details == {"param": "response_format.type", "upstream_status": "422"}


async def test_a_validation_error_reported_as_500_is_the_clients_fault(
    backend: OpenAIBackend, upstream: FakeUpstream
) -> None:
    """llama-cpp-python's answer to a body its schema refuses: no retry, and neither its
    traceback nor its paths reach the client."""
    upstream.chat = status(500, {"error": {"message": (
        "2 validation errors:\n  {'type': 'string_type', 'loc': ('body', 'messages', 1, "
        "'ChatCompletionRequestAssistantMessage', 'content'), 'msg': 'Input should be a valid "
        "string', 'input': None}\n  {'type': 'missing', 'loc': ('body', 'messages', 1, "
        "'ChatCompletionRequestToolMessage', 'tool_call_id'), 'msg': \"Field required\", "
        "'input': {}}\n\n  File \"/srv/llama_cpp/server/app.py\", line 376, in create\n"
        "    POST /v1/chat/completions"
    ), "type": "internal_server_error", "param": None, "code": None}})  # fmt: skip
    error = await failure(backend, task())
    assert error.kind is ErrorKind.INVALID_REQUEST
    assert error.message == (
        "messages.1.content: Input should be a valid string; "
        "messages.1.tool_call_id: Field required"
    )
    assert error.details == {"param": "messages.1.content", "upstream_status": "500"}


async def test_other_500s_stay_retryable(backend: OpenAIBackend, upstream: FakeUpstream) -> None:
    upstream.chat = status(500, {"error": {"message": "CUDA error: out of memory"}})
    assert (await failure(backend, task())).kind is ErrorKind.RETRYABLE


@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        (
            status(400, {"error": {"message": "input too long", "code": 400}}),
            ErrorKind.INVALID_REQUEST,
        ),
        (status(503, {"error": {"message": "loading"}}), ErrorKind.RETRYABLE),
        (drop, ErrorKind.RETRYABLE),
        (status(200, {"data": [{"index": 0, "embedding": [[1.0, 2.0]]}]}), ErrorKind.INTERNAL),
        (status(200, {"data": []}), ErrorKind.INTERNAL),
    ],
    ids=["refused", "unavailable", "dropped", "per-token-vectors", "too-few"],
)
async def test_embedding_failures(
    backend: OpenAIBackend, upstream: FakeUpstream, reply: Any, kind: ErrorKind
) -> None:
    upstream.embeddings = reply
    with pytest.raises(BackendError) as caught:
        await backend.embed(EmbeddingRequest("t1", "embed", ("hello",)))
    assert caught.value.kind is kind
    if kind is ErrorKind.INVALID_REQUEST:
        assert caught.value.message == "input too long"


async def test_a_chat_model_embeds_nothing(backend: OpenAIBackend, upstream: FakeUpstream) -> None:
    with pytest.raises(BackendError) as caught:
        await backend.embed(EmbeddingRequest("t1", "m", ("hello",)))
    assert caught.value.kind is ErrorKind.INVALID_REQUEST
    assert [path for path, _, _ in upstream.requests] == ["/v1/models"]  # nothing sent


def test_validation_errors_name_fields_not_the_union_members_tried() -> None:
    message = (
        "2 validation errors:\n  {'type': 'string_type', 'loc': ('body', 'input', 'str'), "
        "'msg': 'Input should be a valid string', 'input': [[5]]}\n  {'type': 'string_type', "
        "'loc': ('body', 'input', 'list[str]', 0), 'msg': 'Input should be a valid string', "
        "'input': [5]}\n"
    )
    assert validation_errors(message) == (
        "input: Input should be a valid string; input.0: Input should be a valid string",
        {"param": "input"},
    )
    assert validation_errors("CUDA error: out of memory") is None
