"""The official openai Python SDK against the live gateway in front of a fake core."""

from __future__ import annotations

import anyio
import openai
import pytest
from gateway_fakes import GOOD_KEY, MODEL, FakeCore

HELLO = [{"role": "user", "content": "Hi"}]


def sdk(url: str, key: str = GOOD_KEY, retries: int = 0) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key, max_retries=retries)


async def test_sdk_parses_models_completions_and_streams(live_url: str) -> None:
    async with sdk(live_url) as client:
        models = await client.models.list()
        assert [m.id for m in models.data] == [MODEL]
        completion = await client.chat.completions.create(model=MODEL, messages=HELLO)  # type: ignore[arg-type]
        assert completion.choices[0].message.content == "Hello world"
        assert completion.usage is not None
        assert completion.usage.total_tokens == 8
        stream = await client.chat.completions.create(
            model=MODEL,
            messages=HELLO,
            stream=True,
            stream_options={"include_usage": True},  # type: ignore[arg-type]
        )
        text, usage = "", None
        async for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
            if chunk.usage is not None:
                usage = chunk.usage
        assert text == "Hello world"
        assert usage is not None
        assert usage.completion_tokens == 3


@pytest.mark.parametrize(
    ("model", "key", "error"),
    [
        (MODEL, "sk-wrong", openai.AuthenticationError),
        ("forbidden", GOOD_KEY, openai.PermissionDeniedError),
        ("unknown-model", GOOD_KEY, openai.NotFoundError),
        ("bad-sampling", GOOD_KEY, openai.BadRequestError),
        ("rate-limited", GOOD_KEY, openai.RateLimitError),
        ("no-capacity", GOOD_KEY, openai.InternalServerError),
    ],
)
async def test_sdk_raises_the_matching_error_class(
    live_url: str, model: str, key: str, error: type[openai.APIStatusError]
) -> None:
    async with sdk(live_url, key) as client:
        with pytest.raises(error) as caught:
            await client.chat.completions.create(model=model, messages=HELLO)  # type: ignore[arg-type]
    body = caught.value.body
    assert isinstance(body, dict)
    assert set(body) == {"message", "type", "param", "code"}
    assert caught.value.request_id  # x-request-id


async def test_sdk_stream_raises_on_a_mid_stream_failure(live_url: str) -> None:
    async with sdk(live_url) as client:
        stream = await client.chat.completions.create(model="fail-mid", messages=HELLO, stream=True)  # type: ignore[arg-type]
        with pytest.raises(openai.APIError, match="went away mid-stream"):
            async for _ in stream:
                pass


async def test_sdk_retry_waits_as_long_as_retry_after_ms_says(
    live_url: str, fake_core: FakeCore, monkeypatch: pytest.MonkeyPatch
) -> None:
    waits: list[float] = []

    async def no_wait(delay: float) -> None:
        waits.append(delay)

    async with sdk(live_url, retries=2) as client:
        with monkeypatch.context() as patch:
            # The async SDK's retry loop waits with anyio.sleep (openai._base_client):
            # record what it asks for instead of waiting.
            patch.setattr(anyio, "sleep", no_wait)
            with pytest.raises(openai.InternalServerError) as caught:
                await client.chat.completions.create(model="no-capacity", messages=HELLO)  # type: ignore[arg-type]
    assert len(fake_core.seen.requests) == 3
    assert caught.value.response.headers["retry-after-ms"] == "250"
    # retry-after-ms (0.25 s), not retry-after (1 s) nor exponential backoff with jitter.
    assert waits == [0.25, 0.25]
