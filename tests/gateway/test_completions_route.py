"""POST /v1/completions: the legacy request onto the contract, `text_completion` answers and
chunks against openai-python's models, logprobs with text offsets, refusals by name."""

from __future__ import annotations

from typing import Any

import conformance
import httpx
import pytest
from gateway_fakes import GOOD_KEY, MODEL, REPLY, FakeCore

AUTH = {"authorization": f"Bearer {GOOD_KEY}"}


def completion(model: str = MODEL, prompt: Any = "Once", **extra: Any) -> dict[str, Any]:
    return {"model": model, "prompt": prompt, **extra}


async def post(
    client: httpx.AsyncClient, body: dict[str, Any], path: str = "/v1/completions"
) -> Any:
    return await client.post(path, headers=AUTH, json=body)


async def whole(client: httpx.AsyncClient, **extra: Any) -> dict[str, Any]:
    response = await post(client, completion(**extra))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    conformance.completion(body)
    return body


async def chunks(client: httpx.AsyncClient, **extra: Any) -> list[dict[str, Any]]:
    response = await post(client, completion(stream=True, **extra))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    conformance.completion_stream(response.text)
    return conformance.sse_data(response.text)


async def test_every_field_reaches_the_core(client: httpx.AsyncClient, fake_core: FakeCore) -> None:
    body = completion(
        prompt=["a", "b"], echo=True, suffix="END.", logprobs=3, max_tokens=40, n=2,
        stop="\n", seed=9, temperature=0.3, top_p=0.8, presence_penalty=0.1,
        frequency_penalty=0.2, logit_bias={"50256": -100}, user="u-2", priority=4, best_of=1,
    )  # fmt: skip
    assert (await post(client, body)).status_code == 200
    sent = fake_core.seen.completions[-1]
    assert (list(sent.prompt.prompts), sent.prompt.echo, sent.prompt.suffix) == (
        ["a", "b"],
        True,
        "END.",
    )
    sampling = sent.sampling
    assert (sampling.logprobs, sampling.top_logprobs, sampling.max_tokens) == (True, 3, 40)
    assert (sampling.n, list(sampling.stop), sampling.seed) == (2, ["\n"], 9)
    assert sampling.temperature == pytest.approx(0.3)
    assert sampling.top_p == pytest.approx(0.8)
    assert sampling.presence_penalty == pytest.approx(0.1)
    assert sampling.frequency_penalty == pytest.approx(0.2)
    assert dict(sampling.logit_bias) == {50256: -100.0}
    assert (sent.user, sent.priority, sent.collect) == ("u-2", 4, True)


async def test_defaults_are_openais(client: httpx.AsyncClient, fake_core: FakeCore) -> None:
    assert (await post(client, completion())).status_code == 200
    sent = fake_core.seen.completions[-1]
    assert sent.sampling.max_tokens == 16
    assert not sent.sampling.logprobs and not sent.sampling.HasField("top_logprobs")
    assert (list(sent.prompt.prompts), sent.prompt.echo, sent.prompt.suffix) == (
        ["Once"],
        False,
        "",
    )
    assert not sent.HasField("priority")
    zero = await post(client, completion(logprobs=0))
    assert zero.status_code == 200
    assert fake_core.seen.completions[-1].sampling.logprobs


async def test_a_whole_answer_is_a_text_completion(client: httpx.AsyncClient) -> None:
    body = await whole(client)
    assert list(body) == [
        "id", "object", "created", "model", "system_fingerprint", "choices", "usage"
    ]  # fmt: skip
    assert (body["id"], body["object"], body["model"]) == ("cmpl-task123", "text_completion", MODEL)
    assert body["choices"] == [
        {"text": "Hello world", "index": 0, "logprobs": None, "finish_reason": "stop"}
    ]
    assert body["usage"] == {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}


async def test_choices_are_prompt_major(client: httpx.AsyncClient) -> None:
    body = await whole(client, prompt=["A: ", "B: "], n=2, echo=True)
    assert [c["text"] for c in body["choices"]] == [
        "A: Hello world", "A: Hello world", "B: Hello world", "B: Hello world"
    ]  # fmt: skip
    assert [c["index"] for c in body["choices"]] == [0, 1, 2, 3]


async def test_logprobs_place_each_token_after_the_echoed_prompt(client: httpx.AsyncClient) -> None:
    body = await whole(client, prompt="Say: ", echo=True, logprobs=1)
    logprobs = body["choices"][0]["logprobs"]
    assert logprobs == {
        "tokens": list(REPLY),
        "token_logprobs": [-0.25] * 3,
        "top_logprobs": [{token: -0.25} for token in REPLY],
        "text_offset": [5, 8, 10],
    }
    text = body["choices"][0]["text"]
    assert [
        text[o : o + len(t)] for o, t in zip(logprobs["text_offset"], REPLY, strict=True)
    ] == list(REPLY)


async def test_a_stream_sends_text_chunks_finish_usage_and_done(client: httpx.AsyncClient) -> None:
    events = await chunks(client, n=2, stream_options={"include_usage": True})
    assert all(c["object"] == "text_completion" and c["id"] == "cmpl-task123" for c in events)
    texts = [
        "".join(
            c["choices"][0]["text"]
            for c in events
            if c["choices"] and c["choices"][0]["index"] == i
        )
        for i in (0, 1)
    ]
    assert texts == ["Hello world", "Hello world"]
    finishes = [c["choices"][0]["finish_reason"] for c in events if c["choices"]]
    assert finishes[-2:] == ["stop", "stop"] and set(finishes[:-2]) == {None}
    assert events[-1]["choices"] == []
    assert events[-1]["usage"]["total_tokens"] == 11
    assert all(c["usage"] is None for c in events[:-1])
    assert all("usage" not in c for c in await chunks(client))


async def test_streamed_logprobs_keep_their_offsets_across_chunks(
    client: httpx.AsyncClient,
) -> None:
    events = await chunks(client, logprobs=2)
    offsets = [
        o
        for c in events
        if c["choices"] and c["choices"][0]["logprobs"]
        for o in c["choices"][0]["logprobs"]["text_offset"]
    ]
    assert offsets == [0, 3, 5]
    first = next(c["choices"][0]["logprobs"] for c in events if c["choices"][0]["logprobs"])
    assert first["top_logprobs"] == [{"Hel": -0.25, "x": -3.0}]


async def test_the_alias_path_answers_too(client: httpx.AsyncClient) -> None:
    response = await post(client, completion(), "/api/v1/completions")
    assert response.status_code == 200
    assert response.json()["choices"][0]["text"] == "Hello world"


@pytest.mark.parametrize(
    ("extra", "param", "code"),
    [
        ({"prompt": [1, 2, 3]}, "prompt", "unsupported_parameter"),
        ({"prompt": [[1, 2], [3]]}, "prompt", "unsupported_parameter"),
        ({"prompt": 7}, "prompt", "invalid_type"),
        ({"prompt": None}, "prompt", "missing_required"),
        ({"best_of": 2}, "best_of", "unsupported_parameter"),
        ({"logprobs": True}, "logprobs", "invalid_type"),
        ({"echo": "yes"}, "echo", "invalid_type"),
        ({"max_tokens": 0}, "max_tokens", "integer_below_min_value"),
        ({"suffix": 1}, "suffix", "invalid_type"),
        ({"stream_options": {"include_usage": True}}, "stream_options", "invalid_value"),
    ],
)
async def test_shape_errors_and_unsupported_fields_are_refused_by_name(
    client: httpx.AsyncClient, fake_core: FakeCore, extra: dict[str, Any], param: str, code: str
) -> None:
    response = await post(client, completion(**extra))
    assert response.status_code == 400, response.text
    error = conformance.error(response.json())
    assert (error["param"], error["code"]) == (param, code)
    assert fake_core.seen.completions == []


@pytest.mark.parametrize(
    ("model", "extra", "param"),
    [
        (MODEL, {"logprobs": 6}, "logprobs"),
        (MODEL, {"prompt": []}, "prompt"),
        (MODEL, {"n": 5, "prompt": ["a", "b", "c", "d"]}, "n"),
        (MODEL, {"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ("text-only", {}, "model"),
        ("sim-embed", {}, "model"),
    ],
)
async def test_value_and_capability_errors_are_the_cores(
    client: httpx.AsyncClient, fake_core: FakeCore, model: str, extra: dict[str, Any], param: str
) -> None:
    response = await post(client, completion(model, **extra))
    assert response.status_code == 400, response.text
    assert conformance.error(response.json())["param"] == param
    assert len(fake_core.seen.completions) == 1
