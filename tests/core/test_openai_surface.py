"""The wider contract through a real core: capabilities decide admission, tool calls,
logprobs and embeddings travel from worker to caller, context overflow is refused
before the task is queued."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from dataclasses import replace
from typing import Any

import grpc
import pytest
from core_cluster import MODEL, Cluster, ScriptedBackend, collect, until

from gpucloud.v1 import chat_pb2, scheduler_pb2
from gpucloud_common.tokens import chat_tokens
from gpucloud_worker.backend import (
    Capabilities,
    Chunk,
    EmbeddingRequest,
    Embeddings,
    Finish,
    FinishReason,
    GenerationRequest,
    ModelOffer,
    TokenLogprob,
    ToolCallDelta,
    TopLogprob,
    WorkerDescription,
)

EMBEDDER = "test-embedder"
AUTH = (("authorization", "Bearer key-a"),)
WEATHER = chat_pb2.Tool(
    name="get_weather",
    description="Weather in a city",
    parameters_json=json.dumps({"type": "object", "properties": {"city": {"type": "string"}}}),
)
FULL = Capabilities(tools=True, json_schema=True, logprobs=True, completions=True)


class Declares(ScriptedBackend):
    """A backend that declares `capabilities` for its chat model, serves an embedding
    model, calls the first tool when given tools and reports logprobs when asked."""

    def __init__(self, capabilities: Capabilities = FULL, embedder: bool = True) -> None:
        super().__init__(tokens=2)
        self.capabilities = capabilities
        self.embedder = embedder
        self.requests: list[GenerationRequest] = []
        self.embedded: list[EmbeddingRequest] = []

    async def start(self) -> WorkerDescription:
        described = await super().start()
        models = [ModelOffer(MODEL, "tests", self.capabilities)]
        if self.embedder:
            embeds = Capabilities(embeddings=True, embedding_dimensions=3, max_context_tokens=8)
            models.append(ModelOffer(EMBEDDER, "tests", embeds))
        return replace(described, models=tuple(models))

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[Chunk | Finish, None]:
        self.requests.append(request)
        if request.tools:
            name = request.tools[0].name
            yield Chunk(0, "", 1, 5, tool_calls=(ToolCallDelta(0, "call_1", name, ""),))
            yield Chunk(0, "", 2, tool_calls=(ToolCallDelta(0, arguments='{"city": '),))
            yield Chunk(0, "", 2, tool_calls=(ToolCallDelta(0, arguments='"Paris"}'),))
            yield Finish((FinishReason.TOOL_CALLS,), 5, 5)
            return
        for word in ("Hello", " world"):
            top = (TopLogprob(word, -0.1), TopLogprob("x", -2.5))
            logprobs = (TokenLogprob(word, -0.1, top),) if request.logprobs else ()
            yield Chunk(0, word, 1, 5, logprobs=logprobs)
        yield Finish((FinishReason.STOP,), 5, 2)

    async def embed(self, request: EmbeddingRequest) -> Embeddings:
        self.embedded.append(request)
        vectors = tuple(
            (1.0, 0.0, 0.0) if i % 2 else (0.0, 1.0, 0.0) for i in range(len(request.inputs))
        )
        return Embeddings(vectors, prompt_tokens=7)


def chat_request(**fields: Any) -> scheduler_pb2.CreateChatCompletionRequest:
    fields.setdefault("model", MODEL)
    fields.setdefault("messages", [chat_pb2.ChatMessage(role="user", content="weather?")])
    return scheduler_pb2.CreateChatCompletionRequest(**fields)


async def refusal(call: Any) -> dict[str, str]:
    """The trailing metadata of a call refused with INVALID_ARGUMENT."""
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await collect(call) if hasattr(call, "read") else await call
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    return dict(err.value.trailing_metadata() or ())


async def test_tools_travel_to_the_worker_and_tool_calls_back(cluster: Cluster) -> None:
    backend = Declares()
    await cluster.add_worker(backend, "w1")
    request = chat_request(
        tools=[WEATHER],
        tool_choice=chat_pb2.ToolChoice(
            mode=chat_pb2.TOOL_CHOICE_MODE_FUNCTION, function="get_weather"
        ),
        parallel_tool_calls=False,
    )
    events = await collect(cluster.stub.CreateChatCompletion(request, metadata=AUTH))
    pieces = [t for e in events if e.WhichOneof("event") == "delta" for t in e.delta.tool_calls]
    assert (pieces[0].id, pieces[0].name) == ("call_1", "get_weather")
    assert json.loads("".join(p.arguments for p in pieces)) == {"city": "Paris"}
    assert events[-1].finished.choices[0].reason == chat_pb2.FINISH_REASON_TOOL_CALLS
    seen = backend.requests[0]
    assert (seen.tool_choice.mode, seen.tool_choice.function) == ("function", "get_weather")
    assert seen.tools[0].parameters == {
        "type": "object",
        "properties": {"city": {"type": "string"}},
    }
    assert seen.parallel_tool_calls is False


async def test_a_collected_answer_holds_each_tool_call_whole(cluster: Cluster) -> None:
    await cluster.add_worker(Declares(), "w1")
    request = chat_request(tools=[WEATHER], collect=True)
    events = await collect(cluster.stub.CreateChatCompletion(request, metadata=AUTH))
    (choice,) = events[0].completed.choices
    (call,) = choice.tool_calls
    assert (call.id, call.name, json.loads(call.arguments)) == (
        "call_1",
        "get_weather",
        {"city": "Paris"},
    )


async def test_tool_results_reach_the_worker_linked_to_their_calls(cluster: Cluster) -> None:
    backend = Declares()
    await cluster.add_worker(backend, "w1")
    call = chat_pb2.ToolCall(id="call_9", name="get_weather", arguments='{"city":"Oslo"}')
    messages = [
        chat_pb2.ChatMessage(role="user", content="weather in Oslo?"),
        chat_pb2.ChatMessage(role="assistant", tool_calls=[call]),
        chat_pb2.ChatMessage(role="tool", content="-3 C", tool_call_id="call_9"),
    ]
    await collect(cluster.stub.CreateChatCompletion(chat_request(messages=messages), metadata=AUTH))
    seen = backend.requests[0].messages
    assert seen[1].tool_calls[0].id == "call_9" and seen[2].tool_call_id == "call_9"


async def test_logprobs_survive_the_cores_coalescing(cluster: Cluster) -> None:
    await cluster.add_worker(Declares(), "w1")
    sampling = chat_pb2.SamplingParams(logprobs=True, top_logprobs=2)
    request = chat_request(sampling=sampling, collect=True)
    events = await collect(cluster.stub.CreateChatCompletion(request, metadata=AUTH))
    (choice,) = events[0].completed.choices
    assert choice.text == "Hello world"
    assert [lp.token for lp in choice.logprobs] == ["Hello", " world"]
    assert [t.token for t in choice.logprobs[0].top_logprobs] == ["Hello", "x"]


@pytest.mark.parametrize(
    ("capabilities", "fields", "param"),
    [
        (Capabilities(), {"tools": [WEATHER]}, "tools"),
        (
            Capabilities(tools=True),
            {
                "response_format": chat_pb2.ResponseFormat(
                    type=chat_pb2.RESPONSE_FORMAT_TYPE_JSON_OBJECT
                )
            },
            "response_format",
        ),
        (Capabilities(), {"sampling": chat_pb2.SamplingParams(logprobs=True)}, "logprobs"),
        (
            FULL,
            {
                "messages": [
                    chat_pb2.ChatMessage(
                        role="user",
                        parts=[chat_pb2.ContentPart(image_url=chat_pb2.ImageUrl(url="x"))],
                    )
                ]
            },
            "messages[0].content[0]",
        ),
    ],
    ids=["tools", "json", "logprobs", "image"],
)
async def test_what_no_worker_declares_is_refused_before_queueing(
    cluster: Cluster, capabilities: Capabilities, fields: dict[str, Any], param: str
) -> None:
    backend = Declares(capabilities)
    await cluster.add_worker(backend, "w1")
    call = cluster.stub.CreateChatCompletion(chat_request(**fields), metadata=AUTH)
    trailing = await refusal(call)
    assert trailing["x-error-param"] == param
    assert backend.requests == []


async def test_tool_choice_none_needs_no_tool_support(cluster: Cluster) -> None:
    await cluster.add_worker(Declares(Capabilities()), "w1")
    none = chat_pb2.ToolChoice(mode=chat_pb2.TOOL_CHOICE_MODE_NONE)
    request = chat_request(tools=[WEATHER], tool_choice=none)
    events = await collect(cluster.stub.CreateChatCompletion(request, metadata=AUTH))
    assert events[-1].WhichOneof("event") == "finished"


async def test_context_overflow_is_refused_before_the_stream_starts(cluster: Cluster) -> None:
    backend = Declares(replace(FULL, max_context_tokens=64))
    await cluster.add_worker(backend, "w1")
    fits = "x" * 4 * (64 - chat_tokens([""]) - 10)
    ok = chat_request(
        messages=[chat_pb2.ChatMessage(role="user", content=fits)],
        sampling=chat_pb2.SamplingParams(max_tokens=10),
    )
    assert (await collect(cluster.stub.CreateChatCompletion(ok, metadata=AUTH)))[-1].finished
    too_long = chat_request(
        messages=[chat_pb2.ChatMessage(role="user", content=fits)],
        sampling=chat_pb2.SamplingParams(max_tokens=11),
    )
    call = cluster.stub.CreateChatCompletion(too_long, metadata=AUTH)
    trailing = await refusal(call)
    assert (trailing["x-error-code"], trailing["x-error-param"]) == (
        "context_length_exceeded",
        "messages",
    )
    assert len(backend.requests) == 1


async def test_embeddings_travel_and_bill_their_prompt_tokens(cluster: Cluster) -> None:
    backend = Declares()
    await cluster.add_worker(backend, "w1")
    inputs = [chat_pb2.EmbeddingInput(text="a"), chat_pb2.EmbeddingInput(token_ids=[1, 2])]
    reply = await cluster.stub.CreateEmbedding(
        scheduler_pb2.CreateEmbeddingRequest(model=EMBEDDER, inputs=inputs), metadata=AUTH
    )
    assert [list(e.values) for e in reply.data] == [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]
    assert (reply.usage.prompt_tokens, reply.usage.total_tokens) == (7, 7)
    assert backend.embedded[0].inputs == ("a", (1, 2))
    records = cluster.identity.usage.records
    await until(lambda: records)
    assert (records[-1].prompt_tokens, records[-1].completion_tokens) == (7, 0)


async def test_embedding_and_chat_models_each_refuse_the_others_requests(
    cluster: Cluster,
) -> None:
    await cluster.add_worker(Declares(), "w1")
    chat = cluster.stub.CreateChatCompletion(chat_request(model=EMBEDDER), metadata=AUTH)
    assert (await refusal(chat))["x-error-param"] == "model"
    embed = cluster.stub.CreateEmbedding(
        scheduler_pb2.CreateEmbeddingRequest(
            model=MODEL, inputs=[chat_pb2.EmbeddingInput(text="a")]
        ),
        metadata=AUTH,
    )
    assert (await refusal(embed))["x-error-param"] == "model"


@pytest.mark.parametrize(
    ("dimensions", "inputs", "param"),
    [(2, ["a"], "dimensions"), (None, ["x" * 4 * 9], "input")],
    ids=["fixed-dimensions", "input-too-long"],
)
async def test_embedding_limits_are_the_models(
    cluster: Cluster, dimensions: int | None, inputs: list[str], param: str
) -> None:
    await cluster.add_worker(Declares(), "w1")
    request = scheduler_pb2.CreateEmbeddingRequest(
        model=EMBEDDER, inputs=[chat_pb2.EmbeddingInput(text=t) for t in inputs]
    )
    if dimensions is not None:
        request.dimensions = dimensions
    trailing = await refusal(cluster.stub.CreateEmbedding(request, metadata=AUTH))
    assert trailing["x-error-param"] == param


async def test_text_completions_run_on_models_that_declare_them(cluster: Cluster) -> None:
    backend = Declares()
    await cluster.add_worker(backend, "w1")
    request = scheduler_pb2.CreateCompletionRequest(
        model=MODEL,
        prompt=chat_pb2.CompletionPrompt(prompts=["Once upon", "a time"], echo=True),
        sampling=chat_pb2.SamplingParams(max_tokens=4),
    )
    events = await collect(cluster.stub.CreateCompletion(request, metadata=AUTH))
    assert events[-1].WhichOneof("event") == "finished"
    seen = backend.requests[0]
    assert seen.completion is not None and seen.messages == ()
    assert (seen.completion.prompts, seen.completion.echo) == (("Once upon", "a time"), True)


async def test_text_completions_are_refused_where_no_worker_declares_them(
    cluster: Cluster,
) -> None:
    await cluster.add_worker(Declares(Capabilities()), "w1")
    request = scheduler_pb2.CreateCompletionRequest(
        model=MODEL, prompt=chat_pb2.CompletionPrompt(prompts=["hi"])
    )
    trailing = await refusal(cluster.stub.CreateCompletion(request, metadata=AUTH))
    assert trailing["x-error-param"] == "model"


async def test_the_model_list_tells_what_each_model_can_do(cluster: Cluster) -> None:
    await cluster.add_worker(Declares(replace(FULL, max_context_tokens=4096)), "w1")
    reply = await cluster.stub.ListModels(scheduler_pb2.ListModelsRequest(), metadata=AUTH)
    by_id = {m.id: m.capabilities for m in reply.models}
    assert by_id[MODEL].tools and by_id[MODEL].max_context_tokens == 4096
    assert by_id[EMBEDDER].embeddings and by_id[EMBEDDER].embedding_dimensions == 3
