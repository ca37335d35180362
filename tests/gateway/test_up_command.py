"""`gpucloud up`: its settings, a clean shutdown that keeps usage, and no orphaned gateway."""

from __future__ import annotations

import contextlib
import signal
import time
from pathlib import Path

import httpx
import pytest
from up_process import ADMIN_EMAIL, ADMIN_PASSWORD, running_cloud

from gpucloud_gateway import config as gateway_config
from gpucloud_gateway.client import Client
from gpucloud_launcher.up import DEFAULT_GPUS, Cloud, banner, parse, parser

LLAMA = "meta-llama/Llama-3.1-8B-Instruct"
HELLO = [{"role": "user", "content": "Hi"}]


def test_defaults_run_one_worker_per_default_gpu() -> None:
    settings = parse([], env={})
    assert settings.gpus == DEFAULT_GPUS
    assert settings.gateway.http_port == 3000
    assert settings.core.grpc_port == 50051
    assert settings.sim_speed == 1.0


def test_env_sets_ports_data_dir_and_fleet_and_flags_win() -> None:
    env = {
        "GPUCLOUD_HTTP_PORT": "8080",
        "GPUCLOUD_GRPC_PORT": "6000",
        "GPUCLOUD_DATA_DIR": "/tmp/somewhere",
        "GPUCLOUD_SIM_GPUS": "h100",
        "GPUCLOUD_SIM_WORKERS": "3",
        "GPUCLOUD_SIM_SPEED": "0",
    }
    settings = parse([], env=env)
    assert settings.gateway.http_port == 8080
    assert settings.core.grpc_port == 6000
    assert settings.core.data_dir == Path("/tmp/somewhere")
    assert settings.gpus == ("h100", "h100", "h100")
    assert settings.sim_speed == 0.0
    flags = parse(["--http-port", "9", "--workers", "5", "--gpus", "a100,rtx4090"], env=env)
    assert flags.gateway.http_port == 9
    assert flags.gpus == ("a100", "rtx4090", "a100", "rtx4090", "a100")


def test_unknown_gpu_kind_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        parse(["--gpus", "tpu"], env={})
    assert caught.value.code == 2
    assert "tpu" in capsys.readouterr().err


def test_an_exposed_core_needs_its_own_join_token(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        parse(["--grpc-host", "0.0.0.0"], env={})
    assert caught.value.code == 2
    assert "GPUCLOUD_JOIN_TOKEN" in capsys.readouterr().err
    exposed = parse(["--grpc-host", "0.0.0.0", "--join-token", "a-secret-of-our-own"], env={})
    assert exposed.core.join_token == "a-secret-of-our-own"


def test_the_embedded_cloud_ignores_tls_settings(tmp_path: Path) -> None:
    pem = tmp_path / "cert.pem"
    pem.write_text("not used")
    env = {
        "GPUCLOUD_TLS_CERT": str(pem),
        "GPUCLOUD_TLS_KEY": str(pem),
        "GPUCLOUD_CORE_TLS_CA": str(pem),
    }
    settings = parse([], env=env)
    assert (settings.core.tls_cert, settings.core.tls_key) == (None, None)
    assert (settings.gateway.core_tls, settings.gateway.core_tls_ca) == (False, None)


def test_up_help_offers_only_the_flags_up_honours() -> None:
    text = parser().format_help()
    for honoured in ("--grpc-port", "--data-dir", "--join-token", "--http-port", "--web-dir"):
        assert honoured in text
    for fleet in ("--gpus", "--workers", "--sim-speed"):
        assert fleet in text
    for ignored in ("--tls-cert", "--tls-key", "--core ", "--core-tls", "--exit-with-parent"):
        assert ignored not in text
    for ignored in ("GPUCLOUD_TLS_CERT", "GPUCLOUD_TLS_KEY", "GPUCLOUD_CORE_TLS_CA"):
        assert ignored not in text


def test_every_up_flag_has_help_with_its_default() -> None:
    for action in parser()._actions:
        if action.dest != "help":
            assert action.help is not None
            assert "(default: " in action.help, action.option_strings


def test_up_refuses_the_tls_flags_it_would_ignore(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        parse(["--tls-cert", "cert.pem"], env={})
    assert caught.value.code == 2
    assert "unrecognized arguments: --tls-cert" in capsys.readouterr().err


def test_a_bad_fleet_variable_is_a_usage_error_naming_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as caught:
        parse([], env={"GPUCLOUD_SIM_WORKERS": "many"})
    assert caught.value.code == 2
    assert "GPUCLOUD_SIM_WORKERS: 'many' is not an integer" in capsys.readouterr().err


def test_gateway_refuses_an_unknown_log_format_naming_the_variable() -> None:
    with pytest.raises(ValueError, match="GPUCLOUD_LOG_FORMAT: 'xml' is not one of auto, json"):
        gateway_config.parse([], {"GPUCLOUD_LOG_FORMAT": "xml"})


def test_gateway_flags_win_over_env() -> None:
    env = {"GPUCLOUD_CORE": "core:1", "GPUCLOUD_MAX_BODY_BYTES": "10"}
    settings = gateway_config.parse(["--max-body-bytes", "20", "--exit-with-parent"], env=env)
    assert settings.core_address == "core:1"
    assert settings.max_body_bytes == 20
    assert settings.exit_with_parent


def test_banner_shows_only_the_built_in_default_password() -> None:
    default = banner(Cloud(parse([], env={})))
    assert f"{ADMIN_EMAIL} / {ADMIN_PASSWORD}" in default
    chosen = banner(Cloud(parse([], env={"GPUCLOUD_ADMIN_PASSWORD": "s3cret-Pass"})))
    assert "s3cret-Pass" not in chosen
    assert f"{ADMIN_EMAIL}  (password from GPUCLOUD_ADMIN_PASSWORD)" in chosen


@pytest.mark.slow
def test_interrupt_stops_cleanly_and_usage_survives_a_restart(tmp_path: Path) -> None:
    with running_cloud(tmp_path, "--sim-speed", "0") as cloud, Client(cloud.base_url) as client:
        client.login(ADMIN_EMAIL, ADMIN_PASSWORD)
        key_id = client.create_key("counted")["key"]["id"]
        for _ in range(3):
            client.chat(HELLO, model=LLAMA, max_tokens=4)
        cloud.proc.send_signal(signal.SIGINT)
        # Waited for, not followed by SIGTERM: a second signal would force the exit.
        assert cloud.proc.wait(60) == 0, cloud.stderr()[-4000:]
    assert "Traceback" not in cloud.stderr()
    with running_cloud(tmp_path, "--sim-speed", "0") as again, Client(again.base_url) as client:
        client.login(ADMIN_EMAIL, ADMIN_PASSWORD)
        by_key = {s["id"]: s for s in client.metrics()["byKey"]}
    assert by_key[key_id]["requests"] == 3


def assert_gateway_gone(base_url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{base_url}/healthz", timeout=0.5)
        except httpx.TransportError:
            return
        time.sleep(0.1)
    pytest.fail("the gateway outlived `gpucloud up`")


@pytest.mark.slow
def test_a_killed_up_takes_its_gateway_along(tmp_path: Path) -> None:
    with running_cloud(tmp_path) as cloud:
        assert httpx.get(f"{cloud.base_url}/healthz").status_code == 200
        cloud.proc.kill()
        cloud.proc.wait()
        assert_gateway_gone(cloud.base_url)


@pytest.mark.slow
def test_a_second_interrupt_ends_up_and_its_gateway(tmp_path: Path) -> None:
    with running_cloud(tmp_path) as cloud:
        cloud.proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 60
        while "gpucloud is shutting down…" not in cloud.stdout_lines:
            assert time.monotonic() < deadline, cloud.stdout_lines
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            cloud.proc.send_signal(signal.SIGINT)
        # Graceful if the first stop won the race, forced otherwise; either way it ends.
        assert cloud.proc.wait(60) in (0, 128 + signal.SIGINT), cloud.stderr()[-4000:]
    assert "Traceback" not in cloud.stderr()
    assert_gateway_gone(cloud.base_url)
