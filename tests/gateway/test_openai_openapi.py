"""/openapi.json on the OpenAI routes: every documented OpenAI parameter is in the request
schemas (honoured or marked refused), the schemas are valid JSON Schema 2020-12 that
accept the requests the tests send, and real answers match the documented responses."""

from __future__ import annotations

from typing import Any

import httpx
import jsonschema
import orjson
import pytest
from gateway_fakes import EMBEDDER, GOOD_KEY, MODEL

Doc = dict[str, Any]
AUTH = {"authorization": f"Bearer {GOOD_KEY}"}
# The request parameters of OpenAI's API reference, per route.
OPENAI_PARAMETERS = {
    "CreateChatCompletionRequest": {
        "messages", "model", "audio", "frequency_penalty", "function_call", "functions",
        "logit_bias", "logprobs", "max_completion_tokens", "max_tokens", "metadata",
        "modalities", "n", "parallel_tool_calls", "prediction", "presence_penalty",
        "prompt_cache_key", "reasoning_effort", "response_format", "safety_identifier", "seed",
        "service_tier", "stop", "store", "stream", "stream_options", "temperature",
        "tool_choice", "tools", "top_logprobs", "top_p", "user", "verbosity",
        "web_search_options",
    },
    "CreateCompletionRequest": {
        "model", "prompt", "best_of", "echo", "frequency_penalty", "logit_bias", "logprobs",
        "max_tokens", "n", "presence_penalty", "seed", "stop", "stream", "stream_options",
        "suffix", "temperature", "top_p", "user",
    },
    "CreateEmbeddingRequest": {"input", "model", "dimensions", "encoding_format", "user"},
}  # fmt: skip
TOOL = {
    "type": "function",
    "function": {"name": "f", "parameters": {"type": "object"}, "strict": True},
}
REQUESTS = [
    (
        "/v1/chat/completions",
        {
            "model": MODEL,
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "x"}]},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c",
                            "type": "function",
                            "function": {"name": "f", "arguments": "{}"},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "c", "content": "1"},
            ],
            "tools": [TOOL],
            "tool_choice": {"type": "function", "function": {"name": "f"}},
            "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": {}}},
            "logit_bias": {"1": -1},
            "metadata": {"k": "v"},
            "store": False,
            "modalities": ["text"],
            "stream": True,
            "stream_options": {"include_usage": True, "include_obfuscation": False},
        },
    ),
    (
        "/v1/completions",
        {"model": MODEL, "prompt": ["a", "b"], "logprobs": 2, "echo": True, "best_of": 1},
    ),
    ("/v1/embeddings", {"model": EMBEDDER, "input": [[1, 2], [3]], "encoding_format": "base64"}),
]


@pytest.fixture
async def doc(client: httpx.AsyncClient) -> Doc:
    body: Doc = (await client.get("/openapi.json")).json()
    return body


def validator(doc: Doc, name: str) -> jsonschema.Draft202012Validator:
    """A validator of components/schemas/`name`, its references resolved in `doc`."""
    root = {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}
    jsonschema.Draft202012Validator.check_schema(root)
    return jsonschema.Draft202012Validator(root)


def test_the_new_routes_are_documented_at_both_prefixes(doc: Doc) -> None:
    for prefix in ("/v1", "/api/v1"):
        for path, body in [
            ("/completions", "CreateCompletionRequest"),
            ("/embeddings", "CreateEmbeddingRequest"),
        ]:
            operation = doc["paths"][prefix + path]["post"]
            schema = operation["requestBody"]["content"]["application/json"]["schema"]
            assert schema == {"$ref": f"#/components/schemas/{body}"}
            assert operation["security"] == [{"apiKey": []}]
    completion = doc["paths"]["/v1/completions"]["post"]["responses"]["200"]["content"]
    assert completion["text/event-stream"]["x-events"]["message"] == {
        "$ref": "#/components/schemas/Completion"
    }


@pytest.mark.parametrize("name", sorted(OPENAI_PARAMETERS))
def test_every_documented_openai_parameter_is_in_the_schema(doc: Doc, name: str) -> None:
    properties = set(doc["components"]["schemas"][name]["properties"])
    assert OPENAI_PARAMETERS[name] <= properties
    assert properties - OPENAI_PARAMETERS[name] == {"priority"}  # the one extension


def test_refused_parameters_say_so_and_list_what_passes(doc: Doc) -> None:
    chat = doc["components"]["schemas"]["CreateChatCompletionRequest"]["properties"]
    assert chat["store"]["enum"] == [False, None]
    assert chat["service_tier"]["enum"] == ["auto", "default", None]
    assert "Not supported" in chat["audio"]["description"]
    assert "ignored" in doc["components"]["schemas"]["CreateChatCompletionRequest"]["description"]


@pytest.mark.parametrize(("path", "body"), REQUESTS, ids=["chat", "completions", "embeddings"])
async def test_requests_the_gateway_takes_validate_against_the_documented_schema(
    doc: Doc, client: httpx.AsyncClient, path: str, body: dict[str, Any]
) -> None:
    schema = doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    validator(doc, schema["$ref"].rsplit("/", 1)[1]).validate(body)
    response = await client.post(path, headers=AUTH, json=body)
    assert response.status_code == 200, response.text


async def test_answers_validate_against_the_documented_responses(
    doc: Doc, client: httpx.AsyncClient
) -> None:
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "x"}]}
    answers = [
        ("ChatCompletion", "/v1/chat/completions", {**chat, "tools": [TOOL], "logprobs": True}),
        ("ChatCompletion", "/v1/chat/completions", {**chat, "logprobs": True}),
        ("Completion", "/v1/completions", {"model": MODEL, "prompt": "x", "logprobs": 1}),
        ("CreateEmbeddingResponse", "/v1/embeddings", {"model": EMBEDDER, "input": "x"}),
        (
            "CreateEmbeddingResponse",
            "/v1/embeddings",
            {"model": EMBEDDER, "input": "x", "encoding_format": "base64"},
        ),
    ]
    for name, path, body in answers:
        response = await client.post(path, headers=AUTH, json=body)
        validator(doc, name).validate(response.json())
    for name, path, body in [
        ("ChatCompletionChunk", "/v1/chat/completions", {**chat, "tools": [TOOL]}),
        ("ChatCompletionChunk", "/v1/chat/completions", {**chat, "logprobs": True}),
        ("Completion", "/v1/completions", {"model": MODEL, "prompt": "x", "logprobs": 1}),
    ]:
        stream = {**body, "stream": True, "stream_options": {"include_usage": True}}
        response = await client.post(path, headers=AUTH, json=stream)
        events = [e for e in response.text.split("\n\n") if e.startswith("data: {")]
        for event in events:
            validator(doc, name).validate(orjson.loads(event.removeprefix("data: ")))
