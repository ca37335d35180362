"""End to end through `gpucloud up`: legacy text completions (echo, n, logprobs, several
prompts, streamed or not) and embeddings (base64 and float, deterministic, unit
length, in input order) with the official openai SDK, and the 400s for a model used
on the wrong route."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import openai
import pytest
from openai.types import Completion
from openai.types.completion_choice import Logprobs
from up_fixtures import EMBEDDER, LLAMA, served
from up_fixtures import api_key as api_key
from up_fixtures import cloud as cloud
from up_fixtures import recorder as recorder
from up_fixtures import sdk as sdk

from gpucloud_sim.models import CATALOG, find_model

pytestmark = pytest.mark.slow

PROMPT = "The capital of Portugal is"
HELLO: Any = [{"role": "user", "content": "Say hello."}]


def check_completion_logprobs(text: str, logprobs: Logprobs | None, top: int) -> None:
    """Tokens that spell the text, each scored, offsets that follow them, and at most
    top + 1 alternatives (the sampled token is always given)."""
    assert logprobs is not None
    tokens = logprobs.tokens or []
    assert tokens and "".join(tokens) == text
    scores = logprobs.token_logprobs or []
    offsets = logprobs.text_offset or []
    alternatives = logprobs.top_logprobs or []
    assert len(scores) == len(offsets) == len(alternatives) == len(tokens)
    for i, token in enumerate(tokens):
        if i + 1 < len(tokens):
            assert offsets[i + 1] - offsets[i] == len(token)
        if scores[i] is None:  # an echoed prompt's first token has no score
            continue
        assert scores[i] <= 0
        top_here = alternatives[i]
        assert top_here is not None and top <= len(top_here) <= top + 1
        assert all(value <= 0 for value in top_here.values())


def test_a_text_completion_echoes_the_prompt_for_each_of_n_choices(sdk: openai.OpenAI) -> None:
    completion = sdk.completions.create(
        model=LLAMA, prompt=PROMPT, max_tokens=12, n=2, echo=True, logprobs=2, seed=7
    )
    assert completion.object == "text_completion"
    assert completion.id.startswith("cmpl-")
    assert [choice.index for choice in completion.choices] == [0, 1]
    for choice in completion.choices:
        assert choice.text.startswith(PROMPT) and len(choice.text) > len(PROMPT)
        assert choice.finish_reason in ("stop", "length")
        check_completion_logprobs(choice.text, choice.logprobs, 2)
    assert completion.usage is not None
    assert completion.usage.prompt_tokens > 0
    assert 2 <= completion.usage.completion_tokens <= 24
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )


def test_a_text_completion_without_echo_or_logprobs_is_only_the_continuation(
    sdk: openai.OpenAI,
) -> None:
    completion = sdk.completions.create(model=LLAMA, prompt=PROMPT, max_tokens=8)
    (choice,) = completion.choices
    assert choice.text and not choice.text.startswith(PROMPT)
    assert choice.logprobs is None


def test_several_prompts_get_n_choices_each_in_prompt_order(sdk: openai.OpenAI) -> None:
    prompts = ["Roses are red,", "Once upon a time"]
    completion = sdk.completions.create(model=LLAMA, prompt=prompts, max_tokens=6, n=2, echo=True)
    assert [choice.index for choice in completion.choices] == [0, 1, 2, 3]
    for choice in completion.choices:
        assert choice.text.startswith(prompts[choice.index // 2]), choice


def test_a_streamed_text_completion_assembles_per_choice(sdk: openai.OpenAI) -> None:
    stream = sdk.completions.create(
        model=LLAMA, prompt=PROMPT, max_tokens=12, n=2, echo=True, logprobs=2, stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    texts: dict[int, str] = defaultdict(str)
    tokens: dict[int, list[str]] = defaultdict(list)
    finished: dict[int, str] = {}
    chunks: list[Completion] = list(stream)
    for chunk in chunks:
        assert chunk.object == "text_completion"
        for choice in chunk.choices:
            assert choice.index not in finished, "text after the choice finished"
            texts[choice.index] += choice.text
            if choice.logprobs is not None:
                tokens[choice.index].extend(choice.logprobs.tokens or [])
            if choice.finish_reason is not None:
                finished[choice.index] = choice.finish_reason
    assert sorted(texts) == [0, 1]
    assert set(finished.values()) <= {"stop", "length"} and sorted(finished) == [0, 1]
    for index, text in texts.items():
        assert text.startswith(PROMPT) and len(text) > len(PROMPT)
        assert "".join(tokens[index]) == text
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.completion_tokens > 0


def vector_of(sdk: openai.OpenAI, text: str, **params: Any) -> list[float]:
    answer = sdk.embeddings.create(model=EMBEDDER, input=text, **params)
    (item,) = answer.data
    return item.embedding


def test_embeddings_are_unit_vectors_of_the_model_dimension(sdk: openai.OpenAI) -> None:
    spec = find_model(EMBEDDER, CATALOG)
    assert spec in served(sdk)
    answer = sdk.embeddings.create(model=EMBEDDER, input="A quiet street in Lisbon.")
    assert answer.object == "list" and answer.model == EMBEDDER
    (item,) = answer.data
    assert item.object == "embedding" and item.index == 0
    assert len(item.embedding) == spec.embedding_dimensions == 384
    assert math.isclose(math.fsum(v * v for v in item.embedding), 1.0, abs_tol=1e-3)
    assert answer.usage.prompt_tokens > 0
    assert answer.usage.total_tokens == answer.usage.prompt_tokens


def test_base64_and_float_encodings_carry_the_same_vector(sdk: openai.OpenAI) -> None:
    text = "The tram climbs the hill."
    packed = vector_of(sdk, text)  # the SDK asks for base64 and decodes it
    plain = vector_of(sdk, text, encoding_format="float")
    assert len(packed) == len(plain)
    assert all(
        math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-7) for a, b in zip(packed, plain, strict=True)
    )


def test_embeddings_are_deterministic_and_tell_inputs_apart(sdk: openai.OpenAI) -> None:
    first = vector_of(sdk, "sardines on the grill")
    again = vector_of(sdk, "sardines on the grill")
    other = vector_of(sdk, "a train to Porto")
    assert first == again
    assert first != other
    assert math.fsum(a * b for a, b in zip(first, other, strict=True)) < 0.999


def test_a_batch_keeps_the_order_of_its_inputs(sdk: openai.OpenAI) -> None:
    inputs = ["one", "two words", "three words here", "one"]
    answer = sdk.embeddings.create(model=EMBEDDER, input=inputs, encoding_format="float")
    assert [item.index for item in answer.data] == [0, 1, 2, 3]
    singles = [vector_of(sdk, text, encoding_format="float") for text in inputs]
    assert [item.embedding for item in answer.data] == singles
    assert answer.data[0].embedding == answer.data[3].embedding
    assert answer.usage.prompt_tokens >= len(inputs)


def test_token_id_inputs_are_embedded_too(sdk: openai.OpenAI) -> None:
    answer = sdk.embeddings.create(
        model=EMBEDDER, input=[[101, 7592, 2088, 102], [101, 102]], encoding_format="float"
    )
    assert [item.index for item in answer.data] == [0, 1]
    assert answer.data[0].embedding != answer.data[1].embedding
    assert answer.usage.prompt_tokens == 6


def refused_model(call: Any) -> openai.BadRequestError:
    with pytest.raises(openai.BadRequestError) as caught:
        call()
    body = caught.value.body
    assert isinstance(body, dict) and body["type"] == "invalid_request_error", body
    assert caught.value.param == "model", body
    return caught.value


def test_chat_or_text_completion_on_the_embedding_model_is_a_400_naming_model(
    sdk: openai.OpenAI,
) -> None:
    refused_model(lambda: sdk.chat.completions.create(model=EMBEDDER, messages=HELLO))
    refused_model(lambda: sdk.chat.completions.create(model=EMBEDDER, messages=HELLO, stream=True))
    refused_model(lambda: sdk.completions.create(model=EMBEDDER, prompt=PROMPT))


def test_embeddings_on_a_chat_model_are_a_400_naming_model(sdk: openai.OpenAI) -> None:
    refused_model(lambda: sdk.embeddings.create(model=LLAMA, input="hello"))
