"""The sim honours the OpenAI surface: capabilities, prompt tokens as the core counts
them, tool calls, structured output, logprobs, text completions and penalties."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from typing import Any

import jsonschema
import pytest
from pydantic import BaseModel, Field

from gpucloud.v1 import chat_pb2, worker_pb2
from gpucloud_common.tokens import chat_tokens, text_tokens
from gpucloud_server.servicers.admission import message_texts
from gpucloud_worker.backend import (
    BackendError,
    Capabilities,
    Chunk,
    CompletionPrompt,
    ErrorKind,
    Finish,
    FinishReason,
    GenerationRequest,
    Message,
    ResponseFormat,
    Tool,
    ToolCall,
    ToolChoice,
)
from gpucloud_worker.sim import SimBackend
from gpucloud_worker.sim.prefix import chat_pieces
from gpucloud_worker.tasks import generation_request

LLAMA_8B = "meta-llama/Llama-3.1-8B-Instruct"
BGE_SMALL = "BAAI/bge-small-en-v1.5"
NOMIC = "nomic-ai/nomic-embed-text-v1.5"


class Leg(BaseModel):
    origin: str
    destination: str
    day: str = Field(json_schema_extra={"format": "date"})


class Booking(BaseModel):
    """A tool schema as pydantic writes one: $defs, enum, nested objects, a bounded
    array and optional fields."""

    legs: list[Leg] = Field(min_length=1, max_length=3)
    cabin: str = Field(json_schema_extra={"enum": ["economy", "business"]})
    passengers: int = Field(ge=1, le=9)
    note: str | None = None


WEATHER = Tool(
    "get_weather",
    "Current weather in a city",
    {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
        "required": ["city", "unit"],
        "additionalProperties": False,
    },
)
BOOK = Tool("book_trip", "Book flights for a trip", Booking.model_json_schema())
RATE = Tool(
    "rate_answer",
    "Rate how good an answer is",
    {
        "type": "object",
        "properties": {
            "score": {"type": "number", "minimum": 0, "maximum": 5, "multipleOf": 0.5},
            "reasons": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
            "id": {"type": "string", "format": "uuid"},
        },
        "required": ["score", "id"],
    },
)
NO_ARGS = Tool("ping", "Checks the service is up")
TOOLS = (WEATHER, BOOK, RATE, NO_ARGS)


@dataclass
class Output:
    chunks: list[Chunk] = field(default_factory=list)
    finish: Finish | None = None

    def text(self, index: int = 0) -> str:
        return "".join(c.text for c in self.chunks if c.index == index)

    def calls(self, index: int = 0) -> list[dict[str, str]]:
        """The tool calls of a choice, their deltas joined as a client joins them."""
        calls: list[dict[str, str]] = []
        for delta in (d for c in self.chunks if c.index == index for d in c.tool_calls):
            if delta.id:
                assert delta.index == len(calls)
                calls.append({"id": delta.id, "name": delta.name, "arguments": ""})
            calls[delta.index]["arguments"] += delta.arguments
        return calls


def chat(content: str = "Explain how to pick a GPU.", **changes: Any) -> GenerationRequest:
    base = GenerationRequest("task", LLAMA_8B, (Message("user", content),), 0, seed=11)
    return replace(base, **changes)


async def run(backend: SimBackend, request: GenerationRequest) -> Output:
    out = Output()
    async for event in backend.generate(request):
        if isinstance(event, Finish):
            out.finish = event
        else:
            out.chunks.append(event)
    assert out.finish is not None
    assert out.finish.completion_tokens == sum(c.tokens for c in out.chunks)
    return out


@pytest.fixture
def backend() -> SimBackend:
    return SimBackend("h100", [LLAMA_8B, BGE_SMALL, NOMIC], speed=0)


async def test_start_declares_what_each_model_honours(backend: SimBackend) -> None:
    offers = {offer.id: offer.capabilities for offer in (await backend.start()).models}
    context = backend.engine.context_limit(backend.models[0])
    assert context == 131_072  # an H100 holds Llama 3.1's whole context
    assert offers[LLAMA_8B] == Capabilities(
        tools=True, json_schema=True, logprobs=True, completions=True, max_context_tokens=context
    )
    assert offers[BGE_SMALL] == Capabilities(
        embeddings=True, embedding_dimensions=384, max_context_tokens=512
    )
    assert offers[NOMIC] == Capabilities(
        embeddings=True, embedding_dimensions=768, variable_dimensions=True, max_context_tokens=8192
    )


async def test_a_small_kv_cache_declares_the_context_it_holds() -> None:
    backend = SimBackend("rtx4090", [LLAMA_8B], speed=0)
    [offer] = (await backend.start()).models
    assert offer.capabilities.max_context_tokens == backend.engine.context_limit(backend.models[0])
    assert offer.capabilities.max_context_tokens < 131_072


async def test_prompt_tokens_are_the_cores_estimate_with_tool_calls_and_tools(
    backend: SimBackend,
) -> None:
    call = chat_pb2.ToolCall(id="call_1", name="get_weather", arguments='{"city":"Oslo"}')
    assignment = worker_pb2.TaskAssignment(
        task_id="t",
        model=LLAMA_8B,
        messages=[
            chat_pb2.ChatMessage(role="system", content="Be brief."),
            chat_pb2.ChatMessage(role="user", content="Tell me a secret."),
            chat_pb2.ChatMessage(role="assistant", refusal="I cannot share secrets."),
            chat_pb2.ChatMessage(role="user", content="Weather in Oslo, please?"),
            chat_pb2.ChatMessage(role="assistant", tool_calls=[call]),
            chat_pb2.ChatMessage(role="tool", content='{"temp": 3}', tool_call_id="call_1"),
        ],
        tools=[
            chat_pb2.Tool(
                name=t.name, description=t.description, parameters_json=json.dumps(t.parameters)
            )
            for t in TOOLS
        ],
        sampling=chat_pb2.SamplingParams(max_tokens=3, seed=1),
    )
    expected = chat_tokens(message_texts(assignment.messages, assignment.tools))
    request = generation_request(assignment)
    out = await run(backend, request)
    assert out.finish is not None
    assert out.finish.prompt_tokens == expected
    assert len(list(chat_pieces(request.messages, request.tools))) == expected  # prefix keys
    bare = await run(backend, replace(request, tools=(), tool_choice=ToolChoice("none")))
    assert bare.finish is not None and bare.finish.prompt_tokens < expected


def assert_valid_calls(out: Output, index: int = 0) -> list[dict[str, str]]:
    tools = {tool.name: tool for tool in TOOLS}
    calls = out.calls(index)
    for call in calls:
        assert re.fullmatch(r"call_[0-9a-f]{24}", call["id"])
        schema = tools[call["name"]].parameters or {"type": "object"}
        arguments = json.loads(call["arguments"])
        jsonschema.validate(arguments, schema, format_checker=jsonschema.FormatChecker())
    return calls


@pytest.mark.parametrize("tool", TOOLS, ids=lambda t: t.name)
async def test_a_named_function_is_called_once_with_valid_arguments(
    backend: SimBackend, tool: Tool
) -> None:
    for seed in range(8):
        request = chat(tools=TOOLS, tool_choice=ToolChoice("function", tool.name), seed=seed)
        out = await run(backend, request)
        assert out.finish is not None and out.finish.reasons == (FinishReason.TOOL_CALLS,)
        assert [call["name"] for call in assert_valid_calls(out)] == [tool.name]
        assert out.text() == ""


async def test_required_makes_one_or_two_valid_calls(backend: SimBackend) -> None:
    counts = set()
    for seed in range(30):
        out = await run(backend, chat(tools=TOOLS, tool_choice=ToolChoice("required"), seed=seed))
        assert out.finish is not None and out.finish.reasons == (FinishReason.TOOL_CALLS,)
        counts.add(len(assert_valid_calls(out)))
        single = chat(
            tools=TOOLS, tool_choice=ToolChoice("required"), seed=seed, parallel_tool_calls=False
        )
        assert len(assert_valid_calls(await run(backend, single))) == 1
    assert counts == {1, 2}


async def test_auto_calls_a_tool_when_the_user_asks_for_one(backend: SimBackend) -> None:
    auto = ToolChoice("auto")
    asked = await run(backend, chat("What's the weather in Paris?", tools=TOOLS, tool_choice=auto))
    assert assert_valid_calls(asked)[0]["name"] == "get_weather"
    assert json.loads(asked.calls()[0]["arguments"])["city"] == "Paris"
    plain = await run(backend, chat("Tell me a story.", tools=TOOLS, tool_choice=auto))
    assert plain.finish is not None and plain.finish.reasons == (FinishReason.STOP,)
    assert plain.calls() == [] and plain.text()


async def test_auto_answers_in_text_after_a_tool_result(backend: SimBackend) -> None:
    call = ToolCall("call_1", "get_weather", '{"city":"Paris","unit":"celsius"}')
    messages = (
        Message("user", "What's the weather in Paris?"),
        Message("assistant", "", tool_calls=(call,)),
        Message("tool", '{"temp": 21}', tool_call_id="call_1"),
    )
    out = await run(backend, chat(messages=messages, tools=TOOLS, tool_choice=ToolChoice("auto")))
    assert out.calls() == [] and out.text()


async def test_none_never_calls_a_tool(backend: SimBackend) -> None:
    request = chat("Use the weather tool for Paris.", tools=TOOLS, tool_choice=ToolChoice("none"))
    out = await run(backend, request)
    assert out.calls() == [] and out.text()


async def test_a_tool_call_streams_its_head_then_argument_fragments(backend: SimBackend) -> None:
    request = chat(tools=TOOLS, tool_choice=ToolChoice("function", "book_trip"))
    out = await run(backend, request)
    deltas = [d for c in out.chunks for d in c.tool_calls]
    assert (deltas[0].name, deltas[0].arguments) == ("book_trip", "")
    assert deltas[0].id.startswith("call_")
    fragments = deltas[1:]
    assert len(fragments) > 5
    assert all(not d.id and not d.name and 0 < len(d.arguments) <= 4 for d in fragments)
    arguments = out.calls()[0]["arguments"]
    assert out.finish is not None
    assert text_tokens(arguments) < out.finish.completion_tokens <= text_tokens(arguments) + 5


async def test_max_tokens_cuts_a_tool_call_with_length(backend: SimBackend) -> None:
    request = chat(tools=TOOLS, tool_choice=ToolChoice("function", "book_trip"), max_tokens=6)
    out = await run(backend, request)
    assert out.finish is not None and out.finish.reasons == (FinishReason.LENGTH,)
    assert out.finish.completion_tokens == 6


async def test_tool_calls_replay_with_their_seed(backend: SimBackend) -> None:
    request = chat(tools=TOOLS, tool_choice=ToolChoice("required"), seed=4)
    first, again = await run(backend, request), await run(SimBackend("a100", speed=0), request)
    assert first.calls() == again.calls()
    assert first.calls() != (await run(backend, replace(request, seed=5))).calls()


async def test_a_function_choice_naming_no_tool_is_refused(backend: SimBackend) -> None:
    with pytest.raises(BackendError) as error:
        await run(backend, chat(tools=TOOLS, tool_choice=ToolChoice("function", "nope")))
    assert (error.value.kind, error.value.details["param"]) == (
        ErrorKind.INVALID_REQUEST,
        "tool_choice",
    )


@pytest.mark.parametrize("tool", TOOLS[:3], ids=lambda t: t.name)
async def test_json_schema_answers_validate_and_stream_in_pieces(
    backend: SimBackend, tool: Tool
) -> None:
    response_format = ResponseFormat("json_schema", "answer", tool.parameters, strict=True)
    for seed in range(6):
        out = await run(backend, chat(response_format=response_format, seed=seed))
        assert out.finish is not None and out.finish.reasons == (FinishReason.STOP,)
        jsonschema.validate(json.loads(out.text()), tool.parameters)
        assert len(out.chunks) == out.finish.completion_tokens == text_tokens(out.text())


async def test_json_object_answers_are_objects(backend: SimBackend) -> None:
    out = await run(backend, chat(response_format=ResponseFormat("json_object")))
    assert isinstance(json.loads(out.text())["answer"], str)
    again = await run(backend, chat(response_format=ResponseFormat("json_object")))
    assert again.text() == out.text()


async def test_max_tokens_cuts_json_with_length(backend: SimBackend) -> None:
    response_format = ResponseFormat("json_schema", "b", BOOK.parameters)
    out = await run(backend, chat(response_format=response_format, max_tokens=4))
    assert out.finish is not None and out.finish.reasons == (FinishReason.LENGTH,)
    assert len(out.text()) == 16


def assert_logprobs_name_the_text(out: Output, top: int) -> None:
    for chunk in out.chunks:
        assert "".join(lp.token for lp in chunk.logprobs) == chunk.text
        for lp in chunk.logprobs:
            assert lp.logprob <= 0
            assert len(lp.top) == top
            assert [t.logprob for t in lp.top] == sorted((t.logprob for t in lp.top), reverse=True)
            assert sum(2.718281828**t.logprob for t in lp.top) <= 1.0 + 1e-6
            if lp.token in {t.token for t in lp.top}:
                assert lp.logprob in {t.logprob for t in lp.top}


@pytest.mark.parametrize("top", [0, 1, 5])
async def test_logprobs_name_each_token_of_each_chunk(backend: SimBackend, top: int) -> None:
    request = chat(logprobs=True, top_logprobs=top, max_tokens=60, stop=("ly",), n=2)
    out = await run(backend, request)
    assert_logprobs_name_the_text(out, top)
    assert sum(len(c.logprobs) for c in out.chunks) > 10
    tops = [lp.token == lp.top[0].token for c in out.chunks for lp in c.logprobs if lp.top]
    assert not tops or 0.6 < sum(tops) / len(tops) < 1  # mostly, not always, the likeliest
    assert (await run(backend, request)).chunks == out.chunks


async def test_logprobs_cover_json_answers(backend: SimBackend) -> None:
    request = chat(logprobs=True, top_logprobs=2, response_format=ResponseFormat("json_object"))
    out = await run(backend, request)
    assert_logprobs_name_the_text(out, 2)
    assert "".join(lp.token for c in out.chunks for lp in c.logprobs) == out.text()


def completion(*prompts: str, **changes: Any) -> GenerationRequest:
    base = GenerationRequest(
        "task", LLAMA_8B, (), 4, seed=3, n=2, completion=CompletionPrompt(prompts)
    )
    return replace(base, **changes)


async def test_completions_give_n_choices_per_prompt(backend: SimBackend) -> None:
    out = await run(backend, completion("Once upon a time", "The GPU"))
    assert out.finish is not None
    assert len(out.finish.reasons) == 4
    texts = [out.text(i) for i in range(4)]
    assert all(text.startswith(" ") for text in texts)  # continuing the prompt
    assert len(set(texts)) == 4
    assert out.finish.prompt_tokens == text_tokens("Once upon a time") + text_tokens("The GPU")
    again = await run(backend, completion("The GPU", n=2))
    assert [again.text(0), again.text(1)] != texts[2:]  # the seed follows the index


async def test_echo_starts_each_choice_with_its_prompt(backend: SimBackend) -> None:
    prompts = ("Once upon a time", "The GPU")
    request = completion(*prompts, completion=CompletionPrompt(prompts, echo=True))
    out = await run(backend, replace(request, logprobs=True, top_logprobs=1))
    for index in range(4):
        prompt = prompts[index // 2]
        first = next(c for c in out.chunks if c.index == index)
        assert first.text.startswith(prompt) and len(first.text) > len(prompt)
        assert out.text(index).count(prompt) == 1
    assert_logprobs_name_the_text(out, 1)
    assert out.finish is not None and out.finish.completion_tokens == 4 * 4


async def test_a_suffix_is_read_as_prompt(backend: SimBackend) -> None:
    suffix = "and that is why it works."
    request = completion("Here is", completion=CompletionPrompt(("Here is",), suffix=suffix))
    out = await run(backend, replace(request, n=1))
    assert out.finish is not None
    assert out.finish.prompt_tokens == text_tokens("Here is") + text_tokens(suffix)
    assert suffix not in out.text()


async def test_presence_penalty_lowers_repetition(backend: SimBackend) -> None:
    async def distinct(penalty: float | None) -> float:
        shares = []
        for seed in range(6):
            request = chat(max_tokens=150, seed=seed, presence_penalty=penalty)
            words = (await run(backend, request)).text().lower().split()
            shares.append(len(set(words)) / len(words))
        return sum(shares) / len(shares)

    assert await distinct(1.5) > await distinct(None) + 0.03


async def test_generation_on_an_embedding_model_is_refused(backend: SimBackend) -> None:
    with pytest.raises(BackendError) as error:
        await run(backend, chat(model=BGE_SMALL))
    assert (error.value.kind, error.value.details["param"]) == (ErrorKind.INVALID_REQUEST, "model")
