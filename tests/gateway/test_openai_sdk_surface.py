"""The official openai SDK over the app (httpx's ASGI transport) in front of the fake core:
tool calls whole and streamed, structured output with parse(), logprobs, text completions
and embeddings, and refusals raised as the SDK's errors."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import openai
import pytest
from gateway_fakes import EMBEDDER, GOOD_KEY, MODEL, FakeCore
from openai.lib.streaming.chat import ChatCompletionStreamState
from pydantic import BaseModel
from starlette.applications import Starlette

from gpucloud.v1 import chat_pb2

HELLO: list[openai.types.chat.ChatCompletionMessageParam] = [{"role": "user", "content": "Hi"}]
WEATHER: openai.types.chat.ChatCompletionToolParam = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


class GetWeather(BaseModel):
    city: str


class Person(BaseModel):
    name: str
    age: int


@pytest.fixture
async def sdk(app: Starlette) -> AsyncIterator[openai.AsyncOpenAI]:
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app))
    async with openai.AsyncOpenAI(
        base_url="http://gateway/v1", api_key=GOOD_KEY, http_client=http, max_retries=0
    ) as client:
        yield client


async def test_tool_calls_parse_into_the_sdks_objects(sdk: openai.AsyncOpenAI) -> None:
    completion = await sdk.chat.completions.create(model=MODEL, messages=HELLO, tools=[WEATHER])
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    call = (choice.message.tool_calls or [])[0]
    assert call.type == "function"
    assert (call.id, call.function.name) == ("call_1", "get_weather")
    assert json.loads(call.function.arguments) == {"city": "Paris"}


async def test_the_stream_state_assembles_streamed_tool_calls(sdk: openai.AsyncOpenAI) -> None:
    state: ChatCompletionStreamState[None] = ChatCompletionStreamState()
    stream = await sdk.chat.completions.create(
        model=MODEL, messages=HELLO, tools=[WEATHER], n=2, stream=True
    )
    async for chunk in stream:
        state.handle_chunk(chunk)
    final = state.get_final_completion()
    for choice in final.choices:
        assert choice.message.content is None  # as in the whole answer
        call = (choice.message.tool_calls or [])[0]
        assert (call.id, call.function.name) == ("call_1", "get_weather")
        assert call.function.arguments == '{"city": "Paris"}'
        assert choice.finish_reason == "tool_calls"


async def test_the_stream_helper_parses_strict_tool_arguments(sdk: openai.AsyncOpenAI) -> None:
    tool = openai.pydantic_function_tool(GetWeather)
    fragments: list[str] = []
    async with sdk.chat.completions.stream(model=MODEL, messages=HELLO, tools=[tool]) as stream:
        async for event in stream:
            if event.type == "tool_calls.function.arguments.delta":
                fragments.append(event.arguments_delta)
        final = await stream.get_final_completion()
    assert "".join(fragments) == '{"city": "Paris"}'
    call = (final.choices[0].message.tool_calls or [])[0]
    assert call.function.parsed_arguments == GetWeather(city="Paris")


async def test_parse_returns_the_pydantic_object(
    sdk: openai.AsyncOpenAI, fake_core: FakeCore
) -> None:
    completion = await sdk.chat.completions.parse(
        model=MODEL, messages=HELLO, response_format=Person
    )
    assert completion.choices[0].message.parsed == Person(name="Ada", age=36)
    asked = fake_core.seen.requests[-1].response_format
    assert (asked.type, asked.name, asked.strict) == (
        chat_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA,
        "Person",
        True,
    )
    assert json.loads(asked.schema_json)["required"] == ["name", "age"]


async def test_parse_and_stream_parse_tool_arguments_and_content(sdk: openai.AsyncOpenAI) -> None:
    tool = openai.pydantic_function_tool(GetWeather)
    parsed = await sdk.chat.completions.parse(model=MODEL, messages=HELLO, tools=[tool])
    call = (parsed.choices[0].message.tool_calls or [])[0]
    assert call.function.parsed_arguments == GetWeather(city="Paris")
    async with sdk.chat.completions.stream(
        model=MODEL, messages=HELLO, response_format=Person
    ) as stream:
        final = await stream.get_final_completion()
    assert final.choices[0].message.parsed == Person(name="Ada", age=36)
    assert final.choices[0].message.content == '{"name": "Ada", "age": 36}'


async def test_logprobs_parse_whole_and_streamed(sdk: openai.AsyncOpenAI) -> None:
    completion = await sdk.chat.completions.create(
        model=MODEL, messages=HELLO, logprobs=True, top_logprobs=2
    )
    content = (completion.choices[0].logprobs and completion.choices[0].logprobs.content) or []
    assert [t.token for t in content] == ["Hel", "lo", " world"]
    assert [t.token for t in content[0].top_logprobs] == ["Hel", "x"]
    async with sdk.chat.completions.stream(
        model=MODEL, messages=HELLO, logprobs=True, top_logprobs=1
    ) as stream:
        final = await stream.get_final_completion()
    streamed = (final.choices[0].logprobs and final.choices[0].logprobs.content) or []
    assert [t.token for t in streamed] == ["Hel", "lo", " world"]


async def test_text_completions_whole_and_streamed(sdk: openai.AsyncOpenAI) -> None:
    completion = await sdk.completions.create(model=MODEL, prompt="Once", logprobs=1)
    choice = completion.choices[0]
    assert (choice.text, choice.finish_reason) == ("Hello world", "stop")
    assert choice.logprobs is not None and choice.logprobs.text_offset == [0, 3, 5]
    stream = await sdk.completions.create(
        model=MODEL, prompt=["a", "b"], stream=True, stream_options={"include_usage": True}
    )
    texts = ["", ""]
    usage = None
    async for chunk in stream:
        for piece in chunk.choices:
            texts[piece.index] += piece.text
        usage = chunk.usage or usage
    assert texts == ["Hello world", "Hello world"]
    assert usage is not None and usage.completion_tokens == 6


async def test_embeddings_decode_from_base64_and_floats(sdk: openai.AsyncOpenAI) -> None:
    packed = await sdk.embeddings.create(model=EMBEDDER, input=["a", "b"])  # base64 by default
    numbers = await sdk.embeddings.create(model=EMBEDDER, input=["a", "b"], encoding_format="float")
    assert [d.embedding for d in packed.data] == [d.embedding for d in numbers.data]
    assert packed.data[1].embedding[1:3] == pytest.approx([0.6, 0.8])
    assert packed.usage.total_tokens == 2
    short = await sdk.embeddings.create(model=EMBEDDER, input=[[1, 2]], dimensions=3)
    assert len(short.data[0].embedding) == 3


async def test_refusals_before_streaming_raise_the_sdks_errors(sdk: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.chat.completions.create(
            model="small-context", messages=HELLO, max_tokens=64, stream=True
        )
    assert caught.value.code == "context_length_exceeded"
    with pytest.raises(openai.PermissionDeniedError):
        await sdk.completions.create(model="forbidden", prompt="x", stream=True)
    with pytest.raises(openai.BadRequestError) as unsupported:
        await sdk.chat.completions.create(model=MODEL, messages=HELLO, store=True)
    assert unsupported.value.param == "store"
