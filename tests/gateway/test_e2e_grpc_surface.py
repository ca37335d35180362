"""End to end through `gpucloud up`'s gRPC port: the wider OpenAI surface as the contract
carries it (a forced tool call, streamed and collected; embeddings; the capabilities
ListModels reports; a refusal naming its field), with the generated stubs and the
API key as `authorization: Bearer` metadata."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import grpc
import jsonschema
import pytest
from up_fixtures import EMBEDDER, LLAMA
from up_fixtures import api_key as api_key
from up_fixtures import cloud as cloud
from up_process import RunningCloud

from gpucloud.v1 import chat_pb2, scheduler_pb2, scheduler_pb2_grpc
from gpucloud_sim.models import CATALOG, find_model

pytestmark = pytest.mark.slow

TIMEOUT_S = 60.0
PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "origin": {"type": "string", "enum": ["AMS", "CDG", "JFK"]},
        "passengers": {"type": "integer", "minimum": 1, "maximum": 9},
        "traveller": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "age": {"type": "integer", "minimum": 0, "maximum": 120},
            },
            "required": ["name", "age"],
            "additionalProperties": False,
        },
        "stops": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
    },
    "required": ["origin", "passengers", "traveller", "stops"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def stub(cloud: RunningCloud) -> Iterator[scheduler_pb2_grpc.SchedulerServiceStub]:
    with grpc.insecure_channel(cloud.grpc_address) as channel:
        yield scheduler_pb2_grpc.SchedulerServiceStub(channel)


@pytest.fixture(scope="module")
def metadata(api_key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {api_key}"),)


def forced_call(collect: bool) -> scheduler_pb2.CreateChatCompletionRequest:
    return scheduler_pb2.CreateChatCompletionRequest(
        model=LLAMA,
        messages=[chat_pb2.ChatMessage(role="user", content="Book me a flight to Lisbon.")],
        tools=[
            chat_pb2.Tool(
                name="get_weather",
                description="The current weather in a city.",
                parameters_json=json.dumps(
                    {"type": "object", "properties": {"city": {"type": "string"}}}
                ),
            ),
            chat_pb2.Tool(
                name="book_flight",
                description="Book a flight for one traveller.",
                parameters_json=json.dumps(PARAMETERS),
            ),
        ],
        tool_choice=chat_pb2.ToolChoice(
            mode=chat_pb2.TOOL_CHOICE_MODE_FUNCTION, function="book_flight"
        ),
        collect=collect,
    )


def test_a_forced_tool_call_streams_id_and_name_then_valid_arguments(
    stub: scheduler_pb2_grpc.SchedulerServiceStub, metadata: tuple[tuple[str, str], ...]
) -> None:
    events = list(
        stub.CreateChatCompletion(forced_call(False), metadata=metadata, timeout=TIMEOUT_S)
    )
    kinds = [event.WhichOneof("event") for event in events]
    assert "started" in kinds and kinds[-1] == "finished"
    pieces = [piece for e in events if e.HasField("delta") for piece in e.delta.tool_calls]
    texts = "".join(e.delta.text for e in events if e.HasField("delta"))
    assert texts == ""
    assert pieces and {piece.index for piece in pieces} == {0}
    assert pieces[0].id and pieces[0].name == "book_flight"
    assert all(not piece.id and not piece.name for piece in pieces[1:])
    arguments = json.loads("".join(piece.arguments for piece in pieces))
    jsonschema.Draft202012Validator(PARAMETERS).validate(arguments)
    finished = events[-1].finished
    assert [c.reason for c in finished.choices] == [chat_pb2.FINISH_REASON_TOOL_CALLS]
    assert finished.usage.completion_tokens > 0


def test_a_collected_forced_tool_call_comes_whole(
    stub: scheduler_pb2_grpc.SchedulerServiceStub, metadata: tuple[tuple[str, str], ...]
) -> None:
    (event,) = stub.CreateChatCompletion(forced_call(True), metadata=metadata, timeout=TIMEOUT_S)
    assert event.WhichOneof("event") == "completed"
    (choice,) = event.completed.choices
    (call,) = choice.tool_calls
    assert call.id and call.name == "book_flight"
    jsonschema.Draft202012Validator(PARAMETERS).validate(json.loads(call.arguments))
    reasons = [c.reason for c in event.completed.finished.choices]
    assert reasons == [chat_pb2.FINISH_REASON_TOOL_CALLS]


def test_an_unknown_forced_function_is_invalid_argument_naming_tool_choice(
    stub: scheduler_pb2_grpc.SchedulerServiceStub, metadata: tuple[tuple[str, str], ...]
) -> None:
    request = forced_call(False)
    request.tool_choice.function = "cancel_flight"
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.CreateChatCompletion(request, metadata=metadata, timeout=TIMEOUT_S))
    refusal = caught.value
    assert isinstance(refusal, grpc.Call)
    assert refusal.code() == grpc.StatusCode.INVALID_ARGUMENT
    trailing = dict(refusal.trailing_metadata() or ())
    assert str(trailing.get("x-error-param", "")).startswith("tool_choice"), trailing


def test_embeddings_come_in_input_order_as_unit_vectors(
    stub: scheduler_pb2_grpc.SchedulerServiceStub, metadata: tuple[tuple[str, str], ...]
) -> None:
    dimensions = find_model(EMBEDDER, CATALOG).embedding_dimensions
    request = scheduler_pb2.CreateEmbeddingRequest(
        model=EMBEDDER,
        inputs=[
            chat_pb2.EmbeddingInput(text="The tram climbs the hill."),
            chat_pb2.EmbeddingInput(token_ids=[101, 7592, 102]),
            chat_pb2.EmbeddingInput(text="The tram climbs the hill."),
        ],
    )
    answer = stub.CreateEmbedding(request, metadata=metadata, timeout=TIMEOUT_S)
    assert answer.started.model == EMBEDDER
    assert [item.index for item in answer.data] == [0, 1, 2]
    vectors = [list(item.values) for item in answer.data]
    assert all(len(vector) == dimensions for vector in vectors)
    for vector in vectors:
        assert math.isclose(math.fsum(v * v for v in vector), 1.0, abs_tol=1e-3)
    assert vectors[0] == vectors[2] != vectors[1]
    assert answer.usage.prompt_tokens > 0
    assert answer.usage.total_tokens == answer.usage.prompt_tokens


def test_list_models_tells_each_model_s_capabilities(
    stub: scheduler_pb2_grpc.SchedulerServiceStub, metadata: tuple[tuple[str, str], ...]
) -> None:
    listed = stub.ListModels(scheduler_pb2.ListModelsRequest(), metadata=metadata)
    models = {entry.id: entry.capabilities for entry in listed.models}
    chat, embedder = models[LLAMA], models[EMBEDDER]
    assert chat.tools and chat.json_schema and chat.logprobs and chat.completions
    assert not chat.embeddings
    # The model's window, or less where a worker's KV cache holds less.
    assert 0 < chat.max_context_tokens <= find_model(LLAMA).max_context
    assert embedder.embeddings and not embedder.tools
    assert embedder.embedding_dimensions == find_model(EMBEDDER, CATALOG).embedding_dimensions
