"""End to end through `gpucloud up` with real third-party clients, as users point them
at an OpenAI-compatible base URL: langchain-openai (tools, structured output both
ways, streaming, embeddings) and litellm (chat, tools, text completion, embeddings)."""

from __future__ import annotations

import importlib
import json
import math
from collections.abc import Iterator
from types import ModuleType
from typing import Any, Literal

import httpx2
import jsonschema
import openai
import pydantic
import pytest
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_openai import ChatOpenAI, OpenAIEmbeddings
from up_fixtures import EMBEDDER, LLAMA, RecordingTransport, check_recorded
from up_fixtures import api_key as api_key
from up_fixtures import cloud as cloud
from up_fixtures import recorder as recorder
from up_process import RunningCloud

pytestmark = [
    pytest.mark.slow,
    # litellm's streaming handler builds a pydantic model over TypedDicts with ReadOnly
    # items, and pydantic warns about it on each stream: litellm's business, not ours.
    pytest.mark.filterwarnings("ignore:Item .* is using the `ReadOnly` qualifier:UserWarning"),
]

DIMENSIONS = 384  # BAAI/bge-small-en-v1.5


class Traveller(pydantic.BaseModel):
    name: str
    age: int = pydantic.Field(ge=0, le=120)


class BookFlight(pydantic.BaseModel):
    """Book a flight for one traveller."""

    origin: Literal["AMS", "CDG", "JFK"]
    destination: str
    passengers: int = pydantic.Field(ge=1, le=9)
    traveller: Traveller
    stops: list[str]


class Ticket(pydantic.BaseModel):
    """A support ticket."""

    title: str
    priority: Literal["low", "high"]
    tags: list[str]
    traveller: Traveller
    assignee: str | None


def get_weather(city: str, unit: Literal["celsius", "fahrenheit"]) -> str:
    """The current weather in a city.

    Args:
        city: The city's name.
        unit: The temperature unit.
    """
    return f"22 degrees {unit} in {city}"


@pytest.fixture
def transport(recorder: RecordingTransport) -> Iterator[RecordingTransport]:
    """The recorder of the langchain clients' exchanges, checked after each test."""
    yield recorder
    assert check_recorded(recorder) > 0, "the recording transport saw no answer"


@pytest.fixture
def http(transport: RecordingTransport) -> Iterator[httpx2.Client]:
    with httpx2.Client(transport=transport, timeout=120) as client:
        yield client


@pytest.fixture
def chat(cloud: RunningCloud, api_key: str, http: httpx2.Client) -> ChatOpenAI:
    return ChatOpenAI(
        model=LLAMA, base_url=cloud.openai_url, api_key=api_key, max_retries=0,  # type: ignore[arg-type]
        http_client=http,
    )  # fmt: skip


def test_langchain_bind_tools_gives_tool_calls_with_valid_args(chat: ChatOpenAI) -> None:
    forced = chat.bind_tools([BookFlight], tool_choice="BookFlight")
    message = forced.invoke("Book me a flight from Amsterdam to Lisbon.")
    assert isinstance(message, AIMessage)
    assert [call["name"] for call in message.tool_calls] == ["BookFlight"]
    call = message.tool_calls[0]
    assert call["id"]
    BookFlight.model_validate(call["args"])
    assert not message.invalid_tool_calls


def test_langchain_bind_tools_with_a_function_and_any(chat: ChatOpenAI) -> None:
    bound = chat.bind_tools([get_weather, BookFlight], tool_choice="any")
    message = bound.invoke("What is the weather in Paris?")
    assert isinstance(message, AIMessage)
    assert message.tool_calls, message
    for call in message.tool_calls:
        if call["name"] == "get_weather":
            assert set(call["args"]) == {"city", "unit"}
            assert call["args"]["unit"] in ("celsius", "fahrenheit")
        else:
            assert call["name"] == "BookFlight"
            BookFlight.model_validate(call["args"])


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_langchain_structured_output_is_an_instance(
    chat: ChatOpenAI, method: Literal["json_schema", "function_calling"]
) -> None:
    structured = chat.with_structured_output(Ticket, method=method)
    ticket = structured.invoke("File a ticket: the lift in Lisbon is stuck.")
    assert isinstance(ticket, Ticket)
    assert isinstance(ticket.traveller, Traveller)


def test_langchain_structured_output_by_default_is_an_instance(chat: ChatOpenAI) -> None:
    ticket = chat.with_structured_output(Ticket).invoke("File a ticket about a lost bag.")
    assert isinstance(ticket, Ticket)


def test_langchain_stream_yields_chunks_that_join_to_the_text(chat: ChatOpenAI) -> None:
    chunks = list(chat.stream("Say hello."))
    assert len(chunks) > 1
    assert all(isinstance(chunk, AIMessageChunk) for chunk in chunks)
    text = "".join(str(chunk.content) for chunk in chunks)
    assert text.strip()
    whole = chunks[0]
    for chunk in chunks[1:]:
        whole += chunk
    assert whole.content == text
    assert whole.response_metadata.get("finish_reason") == "stop"


def test_langchain_embeddings_embed_documents_and_queries(
    cloud: RunningCloud, api_key: str, http: httpx2.Client
) -> None:
    embeddings = OpenAIEmbeddings(
        model=EMBEDDER, base_url=cloud.openai_url, api_key=api_key,  # type: ignore[arg-type]
        check_embedding_ctx_length=False, max_retries=0, http_client=http,
    )  # fmt: skip
    documents = ["The tram climbs the hill.", "Sardines on the grill."]
    vectors = embeddings.embed_documents(documents)
    assert [len(vector) for vector in vectors] == [DIMENSIONS, DIMENSIONS]
    assert vectors[0] != vectors[1]
    for vector in vectors:
        assert math.isclose(math.fsum(v * v for v in vector), 1.0, abs_tol=1e-3)
    query = embeddings.embed_query(documents[1])
    assert all(math.isclose(a, b, abs_tol=1e-6) for a, b in zip(query, vectors[1], strict=True))


@pytest.fixture(scope="module")
def litellm() -> Iterator[ModuleType]:
    """litellm imported offline: its bundled model-cost map, no fetches, no telemetry."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        patch.setenv("LITELLM_OFFLINE_MODE", "true")
        patch.setenv("LITELLM_TELEMETRY", "False")
        module = importlib.import_module("litellm")
        patch.setattr(module, "telemetry", False, raising=False)
        patch.setattr(module, "num_retries", 0, raising=False)
        yield module


@pytest.fixture
def connection(cloud: RunningCloud, api_key: str, http: httpx2.Client) -> Iterator[dict[str, Any]]:
    """litellm's connection arguments, with an openai client of our own: litellm would
    otherwise cache one per base URL and never close it; ours records its answers."""
    client = openai.OpenAI(
        base_url=cloud.openai_url, api_key=api_key, max_retries=0, http_client=http
    )
    yield {"api_base": cloud.openai_url, "api_key": api_key, "max_retries": 0, "client": client}
    client.close()


HELLO: Any = [{"role": "user", "content": "Say hello."}]


def test_litellm_completion_returns_text(litellm: ModuleType, connection: dict[str, Any]) -> None:
    answer = litellm.completion(
        model=f"openai/{LLAMA}", messages=HELLO, max_tokens=16, **connection
    )
    assert answer.choices[0].message.content.strip()
    assert answer.choices[0].finish_reason in ("stop", "length")
    assert 0 < answer.usage.completion_tokens <= 16


def test_litellm_streamed_completion_joins_to_text(
    litellm: ModuleType, connection: dict[str, Any]
) -> None:
    stream = litellm.completion(model=f"openai/{LLAMA}", messages=HELLO, stream=True, **connection)
    pieces = [chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices]
    assert len(pieces) > 1 and "".join(pieces).strip()


def test_litellm_forced_tool_call_has_valid_arguments(
    litellm: ModuleType, connection: dict[str, Any]
) -> None:
    schema = BookFlight.model_json_schema()
    tools = [{"type": "function", "function": {"name": "book_flight", "parameters": schema}}]
    answer = litellm.completion(
        model=f"openai/{LLAMA}",
        messages=[{"role": "user", "content": "Book me a flight to Lisbon."}],
        tools=tools,
        tool_choice={"type": "function", "function": {"name": "book_flight"}},
        **connection,
    )
    assert answer.choices[0].finish_reason == "tool_calls"
    (call,) = answer.choices[0].message.tool_calls
    assert call.function.name == "book_flight"
    jsonschema.Draft202012Validator(schema).validate(json.loads(call.function.arguments))


@pytest.mark.parametrize("provider", ["text-completion-openai", "openai"])
def test_litellm_text_completion_returns_text(
    litellm: ModuleType, connection: dict[str, Any], provider: str
) -> None:
    answer = litellm.text_completion(
        model=f"{provider}/{LLAMA}", prompt="The capital of Portugal is", max_tokens=8,
        **connection,
    )  # fmt: skip
    assert answer.choices[0].text.strip()
    assert answer.usage.completion_tokens > 0


def test_litellm_embedding_returns_a_vector_per_input(
    litellm: ModuleType, connection: dict[str, Any]
) -> None:
    answer = litellm.embedding(model=f"openai/{EMBEDDER}", input=["one", "two words"], **connection)
    vectors = [item["embedding"] for item in answer.data]
    assert [len(vector) for vector in vectors] == [DIMENSIONS, DIMENSIONS]
    assert vectors[0] != vectors[1]
    assert answer.usage.prompt_tokens > 0
