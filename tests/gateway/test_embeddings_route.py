"""POST /v1/embeddings: every input form onto the contract, vectors as numbers or base64
(little-endian float32) checked against openai-python's model, refusals by name."""

from __future__ import annotations

from typing import Any

import conformance
import httpx
import pytest
from gateway_fakes import EMBEDDER, EMBEDDING_DIMENSIONS, GOOD_KEY, LIMITED_KEY, MODEL, FakeCore

from gpucloud.v1 import chat_pb2

AUTH = {"authorization": f"Bearer {GOOD_KEY}"}


def embed(input: Any = "hello", model: str = EMBEDDER, **extra: Any) -> dict[str, Any]:
    return {"model": model, "input": input, **extra}


async def post(
    client: httpx.AsyncClient, body: dict[str, Any], path: str = "/v1/embeddings"
) -> httpx.Response:
    return await client.post(path, headers=AUTH, json=body)


@pytest.mark.parametrize(
    ("given", "inputs"),
    [
        ("hello", [chat_pb2.EmbeddingInput(text="hello")]),
        (["a", "b"], [chat_pb2.EmbeddingInput(text="a"), chat_pb2.EmbeddingInput(text="b")]),
        ([1, 2, 3], [chat_pb2.EmbeddingInput(token_ids=[1, 2, 3])]),
        (
            [[1, 2], [2147483647]],
            [
                chat_pb2.EmbeddingInput(token_ids=[1, 2]),
                chat_pb2.EmbeddingInput(token_ids=[2147483647]),
            ],
        ),
        (["a", [7]], [chat_pb2.EmbeddingInput(text="a"), chat_pb2.EmbeddingInput(token_ids=[7])]),
    ],
    ids=["text", "texts", "token-ids", "token-id-arrays", "mixed-arrays"],
)
async def test_every_input_form_reaches_the_core(
    client: httpx.AsyncClient, fake_core: FakeCore, given: Any, inputs: list[Any]
) -> None:
    response = await post(client, embed(given))
    assert response.status_code == 200, response.text
    assert list(fake_core.seen.embeddings[-1].inputs) == inputs


async def test_dimensions_user_and_priority_reach_the_core(
    client: httpx.AsyncClient, fake_core: FakeCore
) -> None:
    response = await post(client, embed(dimensions=4, user="u-3", priority=2))
    assert response.status_code == 200, response.text
    sent = fake_core.seen.embeddings[-1]
    assert (sent.dimensions, sent.user, sent.priority) == (4, "u-3", 2)
    assert len(response.json()["data"][0]["embedding"]) == 4
    await post(client, embed())
    assert not fake_core.seen.embeddings[-1].HasField("dimensions")


async def test_vectors_come_as_numbers_by_default(client: httpx.AsyncClient) -> None:
    response = await post(client, embed(["a b", "c"]))
    body = response.json()
    conformance.embeddings(body)
    assert list(body) == ["object", "data", "model", "usage"]
    assert (body["object"], body["model"]) == ("list", EMBEDDER)
    assert [(d["object"], d["index"]) for d in body["data"]] == [("embedding", 0), ("embedding", 1)]
    vector = body["data"][0]["embedding"]
    assert len(vector) == EMBEDDING_DIMENSIONS
    assert vector[:2] == pytest.approx([0.6, 0.8])
    assert body["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    assert response.headers["x-queue-wait-ms"] == "7"


async def test_base64_vectors_decode_to_the_same_float32_numbers(
    client: httpx.AsyncClient,
) -> None:
    numbers = (await post(client, embed(["a", "b"], encoding_format="float"))).json()
    packed = (await post(client, embed(["a", "b"], encoding_format="base64"))).json()
    assert all(isinstance(d["embedding"], str) for d in packed["data"])
    decoded = conformance.embeddings(packed)
    assert [d.embedding for d in decoded.data] == [d["embedding"] for d in numbers["data"]]


async def test_the_alias_path_answers_and_forwards_limits(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/embeddings", headers={"authorization": f"Bearer {LIMITED_KEY}"}, json=embed()
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-ratelimit-remaining-requests"] == "59"


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"model": EMBEDDER}, "input", "missing_required"),
        (embed(7), "input", "invalid_type"),
        (embed(["a", 1]), "input[1]", "invalid_type"),
        (embed([[1], ["a"]]), "input[1]", "invalid_type"),
        (embed([-1]), "input", "invalid_value"),
        (embed([[1], [2**32]]), "input[1]", "invalid_value"),
        (embed(encoding_format="hex"), "encoding_format", "invalid_value"),
        (embed(dimensions=-1), "dimensions", "integer_below_min_value"),
        (embed(user=5), "user", "invalid_type"),
    ],
)
async def test_shape_errors_are_the_gateways_400_naming_the_param(
    client: httpx.AsyncClient, fake_core: FakeCore, body: dict[str, Any], param: str, code: str
) -> None:
    response = await post(client, body)
    assert response.status_code == 400, response.text
    error = conformance.error(response.json())
    assert (error["param"], error["code"]) == (param, code)
    assert fake_core.seen.embeddings == []


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        (embed([]), 400, "input"),
        (embed(""), 400, "input[0]"),
        (embed(dimensions=0), 400, "dimensions"),
        (embed(dimensions=9), 400, "dimensions"),
        (embed(model=MODEL), 400, "model"),
        (embed(model="unknown-model"), 404, "model"),
        (embed(model="forbidden"), 403, None),
        (embed(model="no-capacity"), 503, None),
        (embed(model="rate-limited"), 429, None),
    ],
)
async def test_the_cores_refusals_keep_their_status_and_param(
    client: httpx.AsyncClient, body: dict[str, Any], status: int, param: str | None
) -> None:
    response = await post(client, body)
    assert response.status_code == status, response.text
    assert conformance.error(response.json())["param"] == param


async def test_an_embedding_model_refuses_chat(client: httpx.AsyncClient) -> None:
    body = {"model": EMBEDDER, "messages": [{"role": "user", "content": "Hi"}]}
    response = await client.post("/v1/chat/completions", headers=AUTH, json=body)
    assert response.status_code == 400
    error = conformance.error(response.json())
    assert (error["param"], error["code"]) == ("model", "model_not_supported")
