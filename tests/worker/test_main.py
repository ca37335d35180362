"""`gpucloud worker`'s command line: flags and environment into settings and a backend."""

from __future__ import annotations

import argparse
from pathlib import Path

import pynvml
import pytest
from fake_upstream import FakeUpstream

from gpucloud_worker.backend import ModelOffer, WorkerDescription
from gpucloud_worker.config import WorkerSettings
from gpucloud_worker.main import build_backend, parser, settings
from gpucloud_worker.openai_backend import CHAT_CAPABILITIES


@pytest.fixture(autouse=True)
def no_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    """The openai backend opens NVML itself; these tests want no GPU whatever the machine."""

    def absent() -> None:
        raise pynvml.NVMLError_LibraryNotFound()

    monkeypatch.setattr(pynvml, "nvmlInit", absent)


def args(*argv: str) -> argparse.Namespace:
    return parser().parse_args(["--token", "join-me", *argv])


def openai_args(upstream: FakeUpstream, *argv: str) -> argparse.Namespace:
    return args("--backend", "openai", "--upstream", f"http://127.0.0.1:{upstream.port}/v1", *argv)


async def describe(namespace: argparse.Namespace) -> WorkerDescription:
    backend = build_backend(namespace)
    try:
        return await backend.start()
    finally:
        await backend.close()


@pytest.mark.parametrize("flags", [[], ["--models", "discover"], ["--models", " discover "]])
async def test_openai_models_discover_asks_the_upstream_like_no_flag(
    upstream: FakeUpstream, flags: list[str]
) -> None:
    description = await describe(openai_args(upstream, *flags))
    assert description.models == (ModelOffer("m", "o", CHAT_CAPABILITIES),)
    assert [path for path, _, _ in upstream.requests] == ["/v1/models"]


async def test_sim_models_discover_is_what_fits_like_no_flag() -> None:
    default = await describe(args("--gpu", "h100"))
    assert (await describe(args("--gpu", "h100", "--models", "discover"))) == default


async def test_models_list_is_offered_as_given_without_asking_the_upstream(
    upstream: FakeUpstream,
) -> None:
    description = await describe(openai_args(upstream, "--models", " a, b,,"))
    assert [model.id for model in description.models] == ["a", "b"]
    assert upstream.requests == []


@pytest.mark.parametrize("value", ["", " , ", ",,"])
def test_models_without_an_id_is_a_usage_error(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        args("--models", value)
    assert exited.value.code == 2
    assert "argument --models: no model id in" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("env", "flags", "sent"),
    [
        ({}, ["--upstream-key", "sk-flag"], "Bearer sk-flag"),
        ({"GPUCLOUD_UPSTREAM_KEY": "sk-env"}, [], "Bearer sk-env"),
        ({"GPUCLOUD_UPSTREAM_KEY": "sk-env"}, ["--upstream-key", "sk-flag"], "Bearer sk-flag"),
        ({}, [], None),
    ],
)
async def test_upstream_key_comes_from_the_flag_over_the_environment(
    upstream: FakeUpstream,
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    flags: list[str],
    sent: str | None,
) -> None:
    monkeypatch.delenv("GPUCLOUD_UPSTREAM_KEY", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    await describe(openai_args(upstream, *flags))
    ((_, headers, _),) = upstream.requests
    assert headers.get("authorization") == sent


def test_openai_backend_needs_an_upstream() -> None:
    with pytest.raises(SystemExit, match="needs --upstream"):
        build_backend(args("--backend", "openai"))


def test_settings_come_from_the_environment_and_flags(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not checked here")
    monkeypatch.setenv("GPUCLOUD_CORE", "core.example:443")
    monkeypatch.setenv("GPUCLOUD_JOIN_TOKEN", "from-env")
    monkeypatch.setenv("GPUCLOUD_WORKER_NAME", "box")
    monkeypatch.delenv("GPUCLOUD_WORKER_ID", raising=False)
    namespace = parser().parse_args(["--backend", "openai", "--tls-ca", str(ca)])
    assert settings(namespace) == WorkerSettings(
        core_address="core.example:443",
        join_token="from-env",
        worker_id="box-openai",
        name="box",
        tls_ca=ca,
    )


def test_help_shows_each_flag_with_its_default_and_variable() -> None:
    text = " ".join(parser().format_help().split())  # as read, not as wrapped
    assert "(default: 127.0.0.1:50051; env GPUCLOUD_CORE)" in text
    assert "(default: required; env GPUCLOUD_JOIN_TOKEN)" in text
    assert "sim backend:" in text
    assert "openai backend:" in text
    for action in parser()._actions:
        if action.dest != "help":
            assert action.help is not None
            assert "(default: " in action.help, action.option_strings


def test_flags_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPUCLOUD_WORKER_NAME", "from-env")
    monkeypatch.setenv("GPUCLOUD_WORKER_ID", "id-from-env")
    chosen = settings(args("--name", "from-flag"))
    assert (chosen.name, chosen.worker_id) == ("from-flag", "id-from-env")


def test_settings_need_a_join_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GPUCLOUD_JOIN_TOKEN", raising=False)
    with pytest.raises(SystemExit, match="join token"):
        settings(parser().parse_args([]))
