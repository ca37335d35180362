"""The settings loader: flags over env over defaults, clear refusals, and a --help that explains."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import pytest

from gpucloud_common.settings import (
    SettingsError,
    add_arguments,
    load,
    new_parser,
    option,
    to_argv,
)
from gpucloud_gateway import config as gateway_config


@dataclass(frozen=True, slots=True)
class Example:
    port: int = option(8000, flag="--port", env="EXAMPLE_PORT", help="where to listen")
    ratio: float = option(0.5, flag="--ratio", env="EXAMPLE_RATIO", help="a fraction")
    home: Path | None = option(
        None, flag="--home", env="EXAMPLE_HOME", parse=Path, help="a directory"
    )
    mode: str = option(
        "fast", flag="--mode", env="EXAMPLE_MODE", choices=("fast", "safe"), help="how"
    )
    verbose: bool = option(False, flag="--verbose", env="EXAMPLE_VERBOSE", help="say more")
    secret: str | None = option(
        None, env="EXAMPLE_SECRET", help="never on a command line", default_help="generated"
    )
    internal: int = 3  # not an option: no flag, no variable


def parser(
    *, only: tuple[str, ...] | None = None, exclude: tuple[str, ...] = ()
) -> argparse.ArgumentParser:
    cli = new_parser("example", "An example command.")
    add_arguments(cli, Example, only=only, exclude=exclude)
    return cli


def loaded(argv: list[str], env: dict[str, str]) -> Example:
    return load(Example, parser().parse_args(argv), env)


def test_defaults_when_neither_flag_nor_variable_is_given() -> None:
    assert loaded([], {}) == Example()


def test_a_variable_wins_over_the_default_and_a_flag_over_the_variable() -> None:
    env = {"EXAMPLE_PORT": "9000", "EXAMPLE_RATIO": "0.25", "EXAMPLE_HOME": "/srv"}
    from_env = loaded([], env)
    assert (from_env.port, from_env.ratio, from_env.home) == (9000, 0.25, Path("/srv"))
    from_flags = loaded(["--port", "9001", "--home", "/opt"], env)
    assert (from_flags.port, from_flags.ratio, from_flags.home) == (9001, 0.25, Path("/opt"))


def test_an_empty_variable_counts_as_unset() -> None:
    assert loaded([], {"EXAMPLE_PORT": ""}).port == 8000


def test_a_switch_is_set_by_its_flag_or_a_yes_or_no_variable() -> None:
    assert loaded(["--verbose"], {}).verbose is True
    assert loaded([], {"EXAMPLE_VERBOSE": "yes"}).verbose is True
    assert loaded([], {"EXAMPLE_VERBOSE": "0"}).verbose is False


def test_an_option_with_only_a_variable_is_read_from_it() -> None:
    assert loaded([], {"EXAMPLE_SECRET": "s3cret"}).secret == "s3cret"


def test_load_without_a_command_line_reads_the_environment() -> None:
    assert load(Example, None, {"EXAMPLE_PORT": "1"}).port == 1


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"EXAMPLE_PORT": "eighty"}, "EXAMPLE_PORT: 'eighty' is not an integer"),
        ({"EXAMPLE_RATIO": "half"}, "EXAMPLE_RATIO: 'half' is not a number"),
        ({"EXAMPLE_MODE": "slow"}, "EXAMPLE_MODE: 'slow' is not one of fast, safe"),
        ({"EXAMPLE_VERBOSE": "maybe"}, "EXAMPLE_VERBOSE: 'maybe' is not one of"),
    ],
)
def test_a_bad_variable_is_refused_naming_it(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        loaded([], env)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port", "eighty"], "argument --port: 'eighty' is not an integer"),
        (["--mode", "slow"], "argument --mode: 'slow' is not one of fast, safe"),
    ],
)
def test_a_bad_flag_is_a_usage_error_naming_it(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        loaded(argv, {})
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def help_text(cli: argparse.ArgumentParser) -> str:
    """--help as read, not as wrapped to the terminal."""
    return " ".join(cli.format_help().split())


def test_help_shows_each_flag_with_its_default_and_variable() -> None:
    text = help_text(parser())
    assert "--port PORT" in text
    assert "where to listen (default: 8000; env EXAMPLE_PORT)" in text
    assert "(default: 0.5; env EXAMPLE_RATIO)" in text
    assert "--mode {fast,safe}" in text
    assert "say more (default: off; env EXAMPLE_VERBOSE)" in text


def test_help_lists_the_variables_without_a_flag_in_the_epilog() -> None:
    text = help_text(parser())
    assert "environment variables:" in text
    assert "EXAMPLE_SECRET" in text
    assert "never on a command line (default: generated)" in text
    assert "internal" not in text


def test_every_flag_has_help_text_with_its_default() -> None:
    for action in parser()._actions:
        if action.dest != "help":
            assert action.help is not None
            assert "(default: " in action.help, action.option_strings


def test_a_left_out_option_is_neither_offered_nor_read() -> None:
    cli = parser(exclude=("port",))
    assert "--port" not in cli.format_help()
    settings = load(Example, cli.parse_args([]), {"EXAMPLE_PORT": "1"}, exclude=("port",))
    assert settings.port == 8000
    only = parser(only=("mode",)).format_help()
    assert "--mode" in only
    assert "--ratio" not in only


def test_naming_an_option_that_does_not_exist_is_a_programming_error() -> None:
    with pytest.raises(TypeError, match="no option colour"):
        parser(exclude=("colour",))


def test_to_argv_gives_a_child_the_same_gateway_settings() -> None:
    settings = gateway_config.parse(
        ["--http-port", "4000", "--core-tls", "--cors-allowed-origins", "https://a.example,*"],
        {"GPUCLOUD_WEB_DIR": "/srv/web", "GPUCLOUD_OPS_TOKEN": "from-env-only"},
    )
    argv = to_argv(settings)
    assert "GPUCLOUD_OPS_TOKEN" not in " ".join(argv) and "from-env-only" not in argv
    # The child rebuilds every flagged value from the flags alone; env-only ones from env.
    assert gateway_config.parse(argv, {"GPUCLOUD_OPS_TOKEN": "from-env-only"}) == settings


def test_to_argv_leaves_out_unset_values_and_switches_that_are_off() -> None:
    argv = to_argv(gateway_config.GatewaySettings())
    assert "--core-tls" not in argv and "--web-dir" not in argv
    assert "--cors-allowed-origins" not in argv and "--exit-with-parent" not in argv
    assert argv[argv.index("--http-port") + 1] == "3000"
