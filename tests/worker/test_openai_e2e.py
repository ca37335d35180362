"""End to end: openai SDK -> gateway -> core -> `gpucloud worker --backend openai` -> llama.cpp.

Every part is its own process, as in a deployment: `gpucloud up --workers 0`, the
llama-cpp-python server on a tiny random model, and a worker fronting it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from llama_upstream import (
    EMBED_ALIAS,
    MODEL_ALIAS,
    WIDTH,
    LlamaServer,
    free_port,
    require_llama,
    running_llama,
    write_tiny_llama,
)

from gpucloud_gateway.client import Client
from gpucloud_worker.backend import Message
from gpucloud_worker.openai_backend import estimate_prompt_tokens

pytestmark = [pytest.mark.slow, pytest.mark.llama]  # `make test-llama` runs these

JOIN_TOKEN = "e2e-join-token-0001"
HELLO: Any = [{"role": "user", "content": "Say hello."}]


@dataclass
class Cloud:
    http: str
    grpc: str
    admin: Client
    # One client for the module, closed with it: a client left to the garbage
    # collector leaves its pooled connections open (a ResourceWarning at exit).
    sdk: openai.OpenAI


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _wait_until(check: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError, openai.APIError):
            if check():
                return
        time.sleep(0.1)
    raise TimeoutError(what)


def _spawn(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "GPUCLOUD_LOG_FORMAT": "json"}
    with log.open("ab") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_llama()
    return write_tiny_llama(tmp_path_factory.mktemp("model") / "tiny-llama.gguf")


@pytest.fixture(scope="module")
def cloud(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    home = tmp_path_factory.mktemp("cloud")
    http, grpc = free_port(), free_port()
    command = [
        sys.executable, "-m", "gpucloud_launcher.cli", "up", "--workers", "0",
        "--http-port", str(http), "--grpc-port", str(grpc),
        "--data-dir", str(home / "data"), "--join-token", JOIN_TOKEN,
    ]  # fmt: skip
    proc = _spawn(command, home / "up.log")
    base = f"http://127.0.0.1:{http}"
    try:
        _wait_until(lambda: httpx.get(f"{base}/healthz").status_code == 200, "gpucloud up")
        with Client(base) as admin:
            admin.login("admin@gpucloud.local", "admin123")
            admin.create_key("e2e")
            assert admin.api_key is not None
            sdk = openai.OpenAI(base_url=f"{base}/v1", api_key=admin.api_key, max_retries=0)
            with sdk:
                yield Cloud(base, f"127.0.0.1:{grpc}", admin, sdk)
    finally:
        _stop(proc)


@contextlib.contextmanager
def worker(
    cloud: Cloud, upstream: LlamaServer, log: Path, *options: str
) -> Iterator[subprocess.Popen[bytes]]:
    """`gpucloud worker --backend openai` in front of `upstream`, registered and serving."""
    command = [
        sys.executable, "-m", "gpucloud_launcher.cli", "worker",
        "--core", cloud.grpc, "--token", JOIN_TOKEN, "--name", f"llama-{upstream.port}",
        "--backend", "openai", "--upstream", upstream.url, "--slots", "1", "--heartbeat", "1",
        *options,
    ]  # fmt: skip
    proc = _spawn(command, log)
    try:
        models = cloud.sdk.models
        _wait_until(lambda: upstream.alias in {m.id for m in models.list()}, "worker online")
        yield proc
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def llama(tiny_model: Path) -> Iterator[LlamaServer]:
    with running_llama(tiny_model, tiny_model.with_suffix(".log")) as server:
        yield server


@pytest.fixture(scope="module")
def served(cloud: Cloud, llama: LlamaServer, tiny_model: Path) -> Iterator[Cloud]:
    with worker(cloud, llama, tiny_model.with_name("worker.log")):
        yield cloud


def test_streaming_through_every_hop_with_usage(served: Cloud) -> None:
    stream = served.sdk.chat.completions.create(
        model=MODEL_ALIAS, messages=HELLO, max_tokens=20, stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text) == 20  # one printable character per token of the tiny model
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 20
    assert chunks[-1].usage.prompt_tokens == estimate_prompt_tokens([Message("user", "Say hello.")])
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"


def test_non_streaming_completion(served: Cloud) -> None:
    completion = served.sdk.chat.completions.create(model=MODEL_ALIAS, messages=HELLO, max_tokens=8)
    assert completion.model == MODEL_ALIAS
    assert len(completion.choices[0].message.content or "") == 8
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 8


@pytest.mark.wallclock
def test_client_disconnect_reaches_the_upstream(served: Cloud, llama: LlamaServer) -> None:
    before = llama.log().count("disconnected")
    stream = served.sdk.chat.completions.create(
        model=MODEL_ALIAS, messages=HELLO, max_tokens=1500, stream=True
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            break
    stream.close()
    left = time.monotonic()
    _wait_until(lambda: llama.log().count("disconnected") > before, "upstream abort", 10)
    # The spec's bound is 2 s from client to worker; the upstream notices right after.
    assert time.monotonic() - left < 3


def _state(cloud: Cloud, name: str) -> str:
    (found,) = [w for w in cloud.admin.workers() if w["name"] == name]
    return str(found["state"])


def test_upstream_dying_mid_stream_ends_the_stream_and_the_worker_recovers(
    cloud: Cloud, tiny_model: Path, tmp_path: Path
) -> None:
    doomed = "tiny-llama-doomed"  # served by this test's worker alone
    with (
        running_llama(tiny_model, tmp_path / "llama.log", alias=doomed) as upstream,
        worker(cloud, upstream, tmp_path / "worker.log"),
    ):
        name = f"llama-{upstream.port}"
        sdk = cloud.sdk
        stream = sdk.chat.completions.create(
            model=doomed, messages=HELLO, max_tokens=1500, stream=True
        )
        chunks = iter(stream)
        while not (chunk := next(chunks)).choices or not chunk.choices[0].delta.content:
            pass
        upstream.kill()
        with pytest.raises(openai.APIError):
            list(chunks)
        _wait_until(lambda: _state(cloud, name) == "unhealthy", "worker unhealthy", 10)
        upstream.start()  # same port
        _wait_until(lambda: _state(cloud, name) == "online", "worker online again", 10)
        completion = sdk.chat.completions.create(model=doomed, messages=HELLO, max_tokens=4)
        assert len(completion.choices[0].message.content or "") == 4


OK_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "ok",
        "parameters": {
            "type": "object",
            "properties": {"ok": {"type": "boolean"}},
            "required": ["ok"],
            "additionalProperties": False,
        },
    },
}


def test_a_forced_tool_call_through_every_hop(served: Cloud) -> None:
    completion = served.sdk.chat.completions.create(
        model=MODEL_ALIAS, messages=HELLO, max_tokens=64, tools=[OK_TOOL],
        tool_choice={"type": "function", "function": {"name": "ok"}},
    )  # fmt: skip
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls or []
    assert call.type == "function"
    assert call.function.name == "ok"
    assert json.loads(call.function.arguments) in ({"ok": True}, {"ok": False})


def test_logprobs_through_every_hop(served: Cloud) -> None:
    completion = served.sdk.chat.completions.create(
        model=MODEL_ALIAS, messages=HELLO, max_tokens=6, logprobs=True, top_logprobs=2
    )
    logprobs = completion.choices[0].logprobs
    assert logprobs is not None and logprobs.content is not None
    assert "".join(t.token for t in logprobs.content) == completion.choices[0].message.content
    assert all(len(t.top_logprobs) == 2 for t in logprobs.content)


def test_what_llama_cpp_refuses_reaches_the_client_as_a_400_with_its_reason(
    served: Cloud,
) -> None:
    """The worker declares json_schema by default; llama-cpp-python takes json_object only."""
    with pytest.raises(openai.BadRequestError) as caught:
        served.sdk.chat.completions.create(
            model=MODEL_ALIAS, messages=HELLO, max_tokens=4,
            response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": {}}},
        )  # fmt: skip
    assert caught.value.status_code == 400
    assert "response_format.type: Input should be 'text' or 'json_object'" in str(caught.value)


def test_a_text_completion_through_every_hop(served: Cloud) -> None:
    completion = served.sdk.completions.create(
        model=MODEL_ALIAS, prompt="Once upon", max_tokens=4, echo=True
    )
    text = completion.choices[0].text
    assert text.startswith("Once upon")
    assert len(text) == len("Once upon") + 4
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 4


def test_embeddings_through_every_hop(cloud: Cloud, tmp_path: Path) -> None:
    embedder = write_tiny_llama(tmp_path / "tiny-embed.gguf", embedding=True)
    with (
        running_llama(
            embedder, tmp_path / "llama.log", "--embedding", "true", alias=EMBED_ALIAS
        ) as upstream,
        worker(
            cloud, upstream, tmp_path / "worker.log",
            "--embedding-models", f"{EMBED_ALIAS}:{WIDTH}", "--capabilities", "none",
        ),
    ):  # fmt: skip
        answer = cloud.sdk.embeddings.create(model=EMBED_ALIAS, input=["hello", "world"])
        assert [e.index for e in answer.data] == [0, 1]
        assert all(len(e.embedding) == WIDTH for e in answer.data)
        assert answer.usage.prompt_tokens > 0
        with pytest.raises(openai.BadRequestError) as caught:
            cloud.sdk.chat.completions.create(model=EMBED_ALIAS, messages=HELLO, max_tokens=2)
        assert "embedding model" in str(caught.value)
