"""What an openai worker declares its models can do: as its options say, with the context
its upstream's /models tells, and its embedding models as such."""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any

import pynvml
import pytest
from fake_upstream import FakeUpstream, status

from gpucloud_worker.backend import Capabilities, ModelOffer, WorkerDescription
from gpucloud_worker.config import CHAT_FEATURES, EmbeddingModel
from gpucloud_worker.main import build_backend, options, parser
from gpucloud_worker.nvml import Nvml
from gpucloud_worker.openai_backend import CHAT_CAPABILITIES, OpenAIBackend

NO_FEATURES = Capabilities()


@pytest.fixture(autouse=True)
def no_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    def absent() -> None:
        raise pynvml.NVMLError_LibraryNotFound()

    monkeypatch.setattr(pynvml, "nvmlInit", absent)


def models(upstream: FakeUpstream, *entries: dict[str, Any]) -> None:
    upstream.models = status(200, {"object": "list", "data": list(entries)})


async def describe(upstream: FakeUpstream, **options: Any) -> WorkerDescription:
    backend = OpenAIBackend(f"http://127.0.0.1:{upstream.port}/v1", nvml=Nvml(None, ()), **options)
    try:
        return await backend.start()
    finally:
        await backend.close()


def cli(upstream: FakeUpstream, *argv: str) -> argparse.Namespace:
    url = f"http://127.0.0.1:{upstream.port}/v1"
    return parser().parse_args(["--token", "t", "--backend", "openai", "--upstream", url, *argv])


async def cli_describe(namespace: argparse.Namespace) -> WorkerDescription:
    backend = build_backend(namespace, env={})
    try:
        return await backend.start()
    finally:
        await backend.close()


async def test_chat_models_declare_the_upstreams_features_and_its_context(
    upstream: FakeUpstream,
) -> None:
    models(
        upstream,
        {"id": "vllm-model", "owned_by": "vllm", "max_model_len": 32768},
        {"id": "llama-cpp-model", "owned_by": "llamacpp", "meta": {"n_ctx_train": 4096}},
        {"id": "said-nothing", "owned_by": "x"},
    )
    description = await describe(upstream)
    assert [(m.id, m.capabilities) for m in description.models] == [
        ("vllm-model", replace(CHAT_CAPABILITIES, max_context_tokens=32768)),
        ("llama-cpp-model", replace(CHAT_CAPABILITIES, max_context_tokens=4096)),
        ("said-nothing", CHAT_CAPABILITIES),
    ]
    assert (
        Capabilities(tools=True, json_schema=True, logprobs=True, completions=True)
        == CHAT_CAPABILITIES
    )


async def test_a_configured_context_wins_over_the_upstreams(upstream: FakeUpstream) -> None:
    models(upstream, {"id": "m", "max_model_len": 32768})
    description = await describe(upstream, max_context=8192)
    assert description.models[0].capabilities.max_context_tokens == 8192


async def test_embedding_models_are_declared_as_such(upstream: FakeUpstream) -> None:
    models(upstream, {"id": "chat", "owned_by": "o"}, {"id": "bge", "owned_by": "o"})
    description = await describe(
        upstream, capabilities=NO_FEATURES, embedding_models={"bge": 384, "unlisted": 0}
    )
    assert description.models == (
        ModelOffer("chat", "o", NO_FEATURES),
        ModelOffer("bge", "o", Capabilities(embeddings=True, embedding_dimensions=384)),
        ModelOffer("unlisted", "upstream", Capabilities(embeddings=True)),
    )


async def test_configured_models_and_embedding_models_are_offered_together(
    upstream: FakeUpstream,
) -> None:
    description = await describe(upstream, models=["chat"], embedding_models={"bge": 0})
    assert [(m.id, m.capabilities.embeddings) for m in description.models] == [
        ("chat", False),
        ("bge", True),
    ]
    assert upstream.requests == []


async def test_the_cli_declares_the_backends_default_features(upstream: FakeUpstream) -> None:
    description = await cli_describe(cli(upstream))
    assert description.models == (ModelOffer("m", "o", CHAT_CAPABILITIES),)
    assert Capabilities(**dict.fromkeys(CHAT_FEATURES, True)) == CHAT_CAPABILITIES


async def test_the_cli_passes_capabilities_embedding_models_and_context(
    upstream: FakeUpstream,
) -> None:
    namespace = cli(
        upstream,
        "--capabilities", "tools, logprobs",
        "--embedding-models", "nomic-embed-text:latest,bge-small:384",
        "--max-context", "4096",
    )  # fmt: skip
    by_id = {m.id: m.capabilities for m in (await cli_describe(namespace)).models}
    assert by_id == {
        "m": Capabilities(tools=True, logprobs=True, max_context_tokens=4096),
        "nomic-embed-text:latest": Capabilities(embeddings=True, max_context_tokens=4096),
        "bge-small": Capabilities(
            embeddings=True, embedding_dimensions=384, max_context_tokens=4096
        ),
    }


@pytest.mark.parametrize("value", ["none", "", " , "])
async def test_capabilities_none_declares_none(upstream: FakeUpstream, value: str) -> None:
    description = await cli_describe(cli(upstream, "--capabilities", value))
    assert description.models[0].capabilities == NO_FEATURES


def test_the_options_come_from_the_environment_too() -> None:
    env = {
        "GPUCLOUD_CAPABILITIES": "json_schema",
        "GPUCLOUD_EMBEDDING_MODELS": "e5:1024",
        "GPUCLOUD_MAX_CONTEXT": "2048",
    }
    got = options(parser().parse_args(["--token", "t"]), env)
    assert (got.capabilities, got.embedding_models, got.max_context) == (
        ("json_schema",),
        (EmbeddingModel("e5", 1024),),
        2048,
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--capabilities", "tools,vision"], "unknown capability vision"),
        (["--capabilities", "image_input"], "image_input: the worker relays message text only"),
        (["--embedding-models", "bge:0"], "'bge:0': dimensions must be at least 1"),
        (["--max-context", "-5"], "'-5' is not a count of tokens"),
    ],
)
def test_bad_options_are_usage_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parser().parse_args(["--token", "t", *argv])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_help_lists_the_options_under_the_openai_backend(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        parser().parse_args(["--help"])
    openai_section = " ".join(capsys.readouterr().out.split("openai backend:")[1].split())
    for flag in ("--capabilities", "--embedding-models", "--max-context"):
        assert flag in openai_section
    assert "tools, json_schema, logprobs, completions" in openai_section  # the default
