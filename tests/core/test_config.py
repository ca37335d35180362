"""The core's settings: sources, and what it refuses to run with."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gpucloud_server.config import DEV_JOIN_TOKEN, CoreSettings, parse, parser


def test_flags_win_over_env_and_env_over_defaults() -> None:
    settings = parse(
        ["--grpc-port", "7001"], {"GPUCLOUD_GRPC_PORT": "7000", "GPUCLOUD_QUEUE_CAPACITY": "5"}
    )
    assert (settings.grpc_port, settings.queue_capacity) == (7001, 5)
    assert settings.join_token == DEV_JOIN_TOKEN


def test_a_bad_variable_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match="GPUCLOUD_GRPC_PORT: 'fifty' is not an integer"):
        parse([], {"GPUCLOUD_GRPC_PORT": "fifty"})


def test_help_shows_flags_and_variables_with_their_defaults() -> None:
    text = " ".join(parser().format_help().split())  # as read, not as wrapped
    assert "(default: 50051; env GPUCLOUD_GRPC_PORT)" in text
    assert "--tls-cert TLS_CERT" in text
    # Secrets have no flag (a command line is visible to every user): only a variable.
    assert "--jwt-secret" not in text
    assert "GPUCLOUD_JWT_SECRET" in text


def test_the_built_in_join_token_is_only_for_loopback() -> None:
    CoreSettings(grpc_host="127.0.0.1").check()
    with pytest.raises(ValueError, match="GPUCLOUD_JOIN_TOKEN"):
        CoreSettings(grpc_host="0.0.0.0").check()
    CoreSettings(grpc_host="0.0.0.0", join_token="a-long-secret-of-our-own").check()


def test_a_short_join_token_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 16"):
        CoreSettings(join_token="short").check()


def test_the_server_command_explains_the_refusal() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gpucloud_launcher.cli", "server", "--grpc-host", "0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "gpucloud server: error: the core listens on 0.0.0.0" in result.stderr
    assert "built-in join token" in result.stderr
