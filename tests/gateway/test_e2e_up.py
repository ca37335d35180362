"""End to end: `gpucloud up` as a subprocess, driven with the official openai Python SDK."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import openai
import pytest
from up_process import ADMIN_EMAIL, ADMIN_PASSWORD, RunningCloud, running_cloud

from gpucloud.v1 import chat_pb2, scheduler_pb2, scheduler_pb2_grpc
from gpucloud_gateway.client import Client, GpucloudError

pytestmark = pytest.mark.slow

HELLO: Any = [{"role": "user", "content": "Say hello."}]
LLAMA = "meta-llama/Llama-3.1-8B-Instruct"


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCloud]:
    with running_cloud(tmp_path_factory.mktemp("up")) as running:
        yield running
        status = running.stop()
    assert status == 0, running.stderr()[-4000:]
    assert "Traceback" not in running.stderr(), running.stderr()[-4000:]


@pytest.fixture(scope="module")
def admin(cloud: RunningCloud) -> Iterator[Client]:
    with Client(cloud.base_url) as client:
        client.login(ADMIN_EMAIL, ADMIN_PASSWORD)
        client.create_key("e2e")
        yield client


@pytest.fixture
def sdk(cloud: RunningCloud, admin: Client) -> openai.OpenAI:
    return openai.OpenAI(base_url=cloud.openai_url, api_key=admin.api_key, max_retries=0)


def test_models_lists_what_the_simulated_workers_serve(sdk: openai.OpenAI) -> None:
    ids = {m.id for m in sdk.models.list().data}
    assert LLAMA in ids
    assert len(ids) >= 3


def test_non_streaming_completion_with_headers(sdk: openai.OpenAI) -> None:
    raw = sdk.chat.completions.with_raw_response.create(model=LLAMA, messages=HELLO, max_tokens=12)
    completion = raw.parse()
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == LLAMA
    assert completion.choices[0].message.content
    assert completion.usage is not None
    assert 0 < completion.usage.completion_tokens <= 12
    assert int(raw.headers["x-queue-wait-ms"]) >= 0
    assert raw.headers["x-request-id"]
    assert int(raw.headers["x-ratelimit-remaining-requests"]) >= 0


def test_streaming_with_include_usage(sdk: openai.OpenAI) -> None:
    stream = sdk.chat.completions.create(
        model=LLAMA, messages=HELLO, max_tokens=12, stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens <= 12
    assert chunks[-2].choices[0].finish_reason in ("stop", "length")


def _error(call: Any, expected: type[openai.APIStatusError]) -> dict[str, Any]:
    with pytest.raises(expected) as caught:
        call()
    body = caught.value.body
    assert isinstance(body, dict)
    assert set(body) == {"message", "type", "param", "code"}
    return body


def test_each_error_class_has_the_envelope(
    cloud: RunningCloud, admin: Client, sdk: openai.OpenAI
) -> None:
    bad = openai.OpenAI(base_url=cloud.openai_url, api_key="gpc-nope", max_retries=0)
    _error(
        lambda: bad.chat.completions.create(model=LLAMA, messages=HELLO), openai.AuthenticationError
    )
    _error(
        lambda: sdk.chat.completions.create(model="no-such-model", messages=HELLO),
        openai.NotFoundError,
    )
    body = _error(
        lambda: sdk.chat.completions.create(model=LLAMA, messages=HELLO, temperature=5),
        openai.BadRequestError,
    )
    assert body["param"] == "temperature"
    narrow = admin.create_key("llama only", use=False, allowedModels=[LLAMA])["secret"]
    other = next(m.id for m in sdk.models.list().data if m.id != LLAMA)
    limited = openai.OpenAI(base_url=cloud.openai_url, api_key=narrow, max_retries=0)
    _error(
        lambda: limited.chat.completions.create(model=other, messages=HELLO),
        openai.PermissionDeniedError,
    )
    one_rpm = admin.create_key("one per minute", use=False, rateLimitPerMinute=1)["secret"]
    slow = openai.OpenAI(base_url=cloud.openai_url, api_key=one_rpm, max_retries=0)
    slow.chat.completions.create(model=LLAMA, messages=HELLO, max_tokens=2)
    with pytest.raises(openai.RateLimitError) as caught:
        slow.chat.completions.create(model=LLAMA, messages=HELLO, max_tokens=2)
    headers = caught.value.response.headers
    assert 0 < float(headers["retry-after-ms"]) <= 60_000
    assert int(headers["retry-after"]) >= 1
    assert headers["x-ratelimit-remaining-requests"] == "0"


def test_the_core_decides_the_values_and_names_the_field(admin: Client, sdk: openai.OpenAI) -> None:
    """The gateway checks shapes only: roles, bounds and unknown models are the core's
    refusals, which reach the client as OpenAI's 400/404 with the param at fault."""
    robot = [*HELLO, {"role": "robot", "content": "beep"}]
    body = _error(
        lambda: sdk.chat.completions.create(model=LLAMA, messages=robot),
        openai.BadRequestError,
    )
    assert body["param"] == "messages[1].role"
    assert body["type"] == "invalid_request_error"
    body = _error(
        lambda: sdk.chat.completions.create(model=LLAMA, messages=HELLO, n=17),
        openai.BadRequestError,
    )
    assert body["param"] == "n"
    body = _error(
        lambda: sdk.chat.completions.create(model="no-such-model", messages=HELLO),
        openai.NotFoundError,
    )
    assert (body["code"], body["param"]) == ("model_not_found", "model")
    with pytest.raises(GpucloudError) as caught:
        admin.create_key("too fast", use=False, rateLimitPerMinute=10_001)
    assert (caught.value.status, caught.value.param) == (400, "rateLimitPerMinute")


def test_every_answer_to_a_known_key_tells_its_limits(cloud: RunningCloud, admin: Client) -> None:
    secret = admin.create_key("limits", use=False, allowedModels=[LLAMA])["secret"]
    headers = {"authorization": f"Bearer {secret}"}
    chat = {"messages": HELLO, "max_tokens": 4}
    with httpx.Client(base_url=cloud.openai_url, headers=headers, timeout=30) as http:
        answers = [
            http.get("/models"),
            http.get("/models/no-such-model"),
            http.post("/chat/completions", json={"model": "Qwen/Qwen2.5-7B-Instruct", **chat}),
            http.post("/chat/completions", json={"model": LLAMA, **chat}),
        ]
    assert [a.status_code for a in answers] == [200, 404, 403, 200]
    for answer in answers:
        limit = answer.headers.get("x-ratelimit-limit-requests")
        assert limit == "60", (answer.request.url, answer.status_code, answer.headers)
    # Only the completion counted: the model list and the refusal took nothing.
    remaining = [int(a.headers["x-ratelimit-remaining-requests"]) for a in answers]
    assert remaining == [60, 60, 60, 59]


def test_a_core_refusal_repeats_the_limits_in_its_trailers(
    cloud: RunningCloud, admin: Client
) -> None:
    """The limits go out as initial metadata, but a grpc.aio client reports the initial
    metadata of a call that fails at once as empty (a few calls in a hundred, across
    processes), so the gateway takes them from the refusal's trailers."""
    secret = admin.create_key("trailers", use=False, allowedModels=[LLAMA])["secret"]
    request = scheduler_pb2.CreateChatCompletionRequest(
        model="Qwen/Qwen2.5-7B-Instruct",
        messages=[chat_pb2.ChatMessage(role="user", content="Say hello.")],
        sampling=chat_pb2.SamplingParams(max_tokens=4),
        collect=True,
    )
    with grpc.insecure_channel(cloud.grpc_address) as channel:
        call = scheduler_pb2_grpc.SchedulerServiceStub(channel).CreateChatCompletion(
            request, metadata=(("authorization", f"Bearer {secret}"),)
        )
        with pytest.raises(grpc.RpcError) as caught:
            list(call)
    refusal = caught.value
    assert isinstance(refusal, grpc.Call)
    assert refusal.code() == grpc.StatusCode.PERMISSION_DENIED
    trailing = dict(refusal.trailing_metadata() or ())
    assert trailing["x-error-code"] == "model_not_allowed"
    assert trailing["x-ratelimit-limit-requests"] == "60"
    assert trailing["x-ratelimit-remaining-requests"] == "60"


def test_revocation_is_effective_at_once(cloud: RunningCloud, admin: Client) -> None:
    created = admin.create_key("to revoke", use=False)
    client = openai.OpenAI(base_url=cloud.openai_url, api_key=created["secret"], max_retries=0)
    client.chat.completions.create(model=LLAMA, messages=HELLO, max_tokens=2)
    admin.revoke_key(created["key"]["id"])
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model=LLAMA, messages=HELLO, max_tokens=2)


async def test_fifty_concurrent_streams_all_complete(cloud: RunningCloud, admin: Client) -> None:
    big = admin.create_key("fifty", use=False, rateLimitPerMinute=1000)["secret"]
    async with openai.AsyncOpenAI(base_url=cloud.openai_url, api_key=big, max_retries=0) as sdk:

        async def one(i: int) -> int:
            stream = await sdk.chat.completions.create(
                model=LLAMA, messages=[{"role": "user", "content": f"count {i}"}],
                max_tokens=16, stream=True, stream_options={"include_usage": True},
            )  # fmt: skip
            usage = None
            async for chunk in stream:
                usage = chunk.usage or usage
            assert usage is not None
            return usage.completion_tokens

        tokens = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(50))), 60)
    assert len(tokens) == 50
    assert all(0 < t <= 16 for t in tokens)


def _active_tasks(admin: Client) -> int:
    return sum(w["activeTasks"] for w in admin.workers())


def _tasks_completed(admin: Client) -> int:
    return sum(w["tasksCompleted"] for w in admin.workers())


def test_disconnect_frees_the_worker_slot(cloud: RunningCloud, admin: Client) -> None:
    """The slot comes back because the call was cancelled, not because the 4000 tokens
    ran out: no task completes meanwhile. The deadline only bounds a hung test."""
    body = {"model": LLAMA, "messages": HELLO, "max_tokens": 4000, "stream": True}
    headers = {"authorization": f"Bearer {admin.api_key}"}
    with httpx.Client(base_url=cloud.base_url, timeout=10) as http:
        response = http.send(
            http.build_request("POST", "/v1/chat/completions", json=body, headers=headers),
            stream=True,
        )
        lines = response.iter_lines()  # kept referenced: closing it would close the socket
        while '"content":"' not in (line := next(lines)) or '"content":""' in line:
            pass
        assert _active_tasks(admin) == 1
        completed = _tasks_completed(admin)
        response.close()
        deadline = time.monotonic() + 60
        while _active_tasks(admin):
            assert time.monotonic() < deadline, "a minute on, the slot is still busy"
            time.sleep(0.05)
    assert _tasks_completed(admin) == completed, "the task ran to its end: not cancelled"
    del lines


def test_management_api_hides_secrets_and_other_users_keys(
    cloud: RunningCloud, admin: Client
) -> None:
    created = admin.create_key("admin secret", use=False)
    secret = created["secret"]
    http = httpx.Client(base_url=cloud.base_url)
    auth = {"authorization": f"Bearer {admin.token}"}
    member = {"email": "member@example.com", "password": "member-pass-1", "role": "member"}
    assert http.post("/api/users", json=member, headers=auth).status_code == 201
    with Client(cloud.base_url) as other:
        other.login(member["email"], member["password"])
        with pytest.raises(GpucloudError) as caught:
            other.revoke_key(created["key"]["id"])
        assert caught.value.status == 404
        assert created["key"]["id"] not in {k["id"] for k in other.list_keys()}
    for path in ("/api/keys", "/api/monitoring/workers", "/api/monitoring/metrics"):
        text = http.get(path, headers=auth).text
        assert secret not in text
        assert (admin.api_key or "") not in text
    assert http.get("/api/keys").status_code == 401
    assert (
        http.get("/api/keys", headers={"authorization": "Bearer forged.jwt.x"}).status_code == 401
    )
    http.close()


def test_operations_endpoints(cloud: RunningCloud) -> None:
    with httpx.Client(base_url=cloud.base_url) as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        assert http.get("/readyz").status_code == 200
        assert "gpucloud_requests_total" in http.get("/metrics").text
        assert http.get("/").status_code == 200


def test_sdk_retry_honours_retry_after(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A cloud whose queue holds nothing answers every completion 429 with retry-after-ms.
    with running_cloud(tmp_path, "--queue-capacity", "0", "--workers", "1") as full:
        with Client(full.base_url) as client:
            client.login(ADMIN_EMAIL, ADMIN_PASSWORD)
            secret = client.create_key("retry")["secret"]
        sdk = openai.OpenAI(base_url=full.openai_url, api_key=secret, max_retries=2)
        waits: list[float] = []
        with monkeypatch.context() as patch:
            # The SDK's retry loop waits with time.sleep (openai._base_client): record
            # what it asks for instead of waiting.
            patch.setattr(time, "sleep", waits.append)
            with pytest.raises(openai.RateLimitError) as caught:
                sdk.chat.completions.create(model=LLAMA, messages=HELLO)
        metrics = httpx.get(f"{full.base_url}/metrics").text
    retry_after_ms = int(caught.value.response.headers["retry-after-ms"])
    assert retry_after_ms > 0
    # Two waits of exactly retry-after-ms, not the SDK's exponential backoff with jitter.
    assert waits == [retry_after_ms / 1000] * 2
    assert 'gpucloud_requests_total{model="",status="429",stream="false"} 3.0' in metrics
