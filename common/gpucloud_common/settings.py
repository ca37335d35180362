"""Settings from flags, then GPUCLOUD_* environment variables, then defaults.

A settings class is a frozen dataclass whose fields declare their own sources:

    grpc_port: int = option(50051, flag="--grpc-port", env="GPUCLOUD_GRPC_PORT", help="...")

`add_arguments` puts the flags (and, in the epilog, the variables without a flag)
on a parser; `load` builds the object. Both take the same `only`/`exclude`, so a
command that leaves an option out neither offers nor reads it. `to_argv` writes an
object back as flags, for a child process started with the same settings.
"""

from __future__ import annotations

import argparse
import dataclasses
import textwrap
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

S = TypeVar("S")
T = TypeVar("T")

_KEY = "gpucloud.option"
# "  GPUCLOUD_NAME   what it does (default: …)", wrapped under the text.
_ENV_LINE = textwrap.TextWrapper(width=100, initial_indent="  ", subsequent_indent=" " * 39)
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class SettingsError(ValueError):
    """A value from a flag or the environment that the option does not accept."""


@dataclass(frozen=True, slots=True)
class Option:
    """Where a field's value may come from, and how it is explained in --help."""

    help: str
    flag: str | None
    env: str | None
    parse: Callable[[str], object]
    choices: tuple[str, ...]
    default_help: str | None
    switch: bool  # a flag without a value, e.g. --core-tls


def option(
    default: T,
    *,
    help: str,
    flag: str | None = None,
    env: str | None = None,
    parse: Callable[[str], object] | None = None,
    choices: Sequence[str] = (),
    default_help: str | None = None,
) -> T:
    """A dataclass field read from `flag`, else `env`, else `default`. `parse` turns the
    text into the value (the default's type unless given); `default_help` describes a
    default that its value does not (`None` meaning "SQLite in the data dir")."""
    switch = isinstance(default, bool)
    if parse is None:
        parse = _boolean if switch else (str if default is None else type(default))
    spec = Option(help, flag, env, parse, tuple(choices), default_help, switch)
    return dataclasses.field(default=default, metadata={_KEY: spec})


def new_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """A parser whose epilog (the variables without a flag) keeps its line breaks."""
    return argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def add_arguments(
    parser: argparse.ArgumentParser,
    settings: type[Any],
    *,
    only: Collection[str] | None = None,
    exclude: Collection[str] = (),
    title: str | None = None,
) -> None:
    """The flags of `settings`' options, each with its help, default and variable; the
    options with only a variable are listed in the parser's epilog."""
    target: argparse.ArgumentParser | argparse._ArgumentGroup = parser
    if title is not None:
        target = parser.add_argument_group(title)
    env_only: list[str] = []
    for field, spec in _options(settings, only, exclude):
        if spec.flag is None:
            if spec.env is not None:
                text = f"{spec.help} (default: {_shown(field, spec)})"
                env_only.append(_ENV_LINE.fill(f"{spec.env:<36} {text}"))
            continue
        sources = f"default: {_shown(field, spec)}" + (f"; env {spec.env}" if spec.env else "")
        text = f"{spec.help} ({sources})".replace("%", "%%")
        if spec.switch:
            target.add_argument(
                spec.flag, dest=field.name, action="store_true", default=argparse.SUPPRESS,
                help=text,
            )  # fmt: skip
        else:
            target.add_argument(
                spec.flag, dest=field.name, type=_flag_type(spec), default=argparse.SUPPRESS,
                metavar=_metavar(spec.flag, spec.choices), help=text,
            )  # fmt: skip
    if env_only:
        heading = "environment variables" + (f" ({title})" if title else "") + ":"
        section = "\n".join([heading, *env_only])
        parser.epilog = f"{parser.epilog}\n\n{section}" if parser.epilog else section


def load(
    settings: type[S],
    args: argparse.Namespace | None,
    env: Mapping[str, str],
    *,
    only: Collection[str] | None = None,
    exclude: Collection[str] = (),
) -> S:
    """`settings` from the flags in `args`, else the variables in `env`, else the defaults.
    Raises SettingsError naming the variable when one holds a value its option refuses."""
    values: dict[str, object] = {}
    for field, spec in _options(settings, only, exclude):
        if args is not None and field.name in vars(args):
            values[field.name] = getattr(args, field.name)
        elif spec.env is not None and env.get(spec.env):
            try:
                values[field.name] = _convert(spec, env[spec.env])
            except ValueError as err:
                raise SettingsError(f"{spec.env}: {err}") from None
    return settings(**values)


def to_argv(settings: object, *, exclude: Collection[str] = ()) -> list[str]:
    """The flags that give a child process `settings`' values: every option with a flag,
    except an unset (None) value and a switch that is off. Options without a flag
    travel in the child's environment."""
    argv: list[str] = []
    for field, spec in _options(type(settings), None, exclude):
        value = getattr(settings, field.name)
        if spec.flag is None or value is None or value is False:
            continue
        if spec.switch:
            argv.append(spec.flag)
        elif isinstance(value, tuple):
            if value:
                argv += [spec.flag, ",".join(str(v) for v in value)]
        else:
            argv += [spec.flag, str(value)]
    return argv


def _options(
    settings: type[Any], only: Collection[str] | None, exclude: Collection[str]
) -> Iterator[tuple[dataclasses.Field[Any], Option]]:
    fields = dataclasses.fields(settings)
    unknown = (set(only or ()) | set(exclude)) - {f.name for f in fields}
    if unknown:
        raise TypeError(f"{settings.__name__} has no option {', '.join(sorted(unknown))}")
    for field in fields:
        spec = field.metadata.get(_KEY)
        if spec is not None and (only is None or field.name in only) and field.name not in exclude:
            yield field, spec


def _convert(spec: Option, raw: str) -> object:
    if spec.choices and raw not in spec.choices:
        raise ValueError(f"{raw!r} is not one of {', '.join(spec.choices)}")
    try:
        return spec.parse(raw)
    except (ValueError, argparse.ArgumentTypeError) as err:
        if spec.parse is int:
            raise ValueError(f"{raw!r} is not an integer") from None
        if spec.parse is float:
            raise ValueError(f"{raw!r} is not a number") from None
        raise ValueError(str(err)) from None


def _flag_type(spec: Option) -> Callable[[str], object]:
    def convert(raw: str) -> object:
        try:
            return _convert(spec, raw)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    return convert


def _metavar(flag: str, choices: tuple[str, ...]) -> str:
    """`{auto,json,console}`, else the flag's own name: `--core CORE`, `--token TOKEN`."""
    if choices:
        return f"{{{','.join(choices)}}}"
    return flag.lstrip("-").upper().replace("-", "_")


def _boolean(raw: str) -> bool:
    word = raw.strip().lower()
    if word in _TRUE | _FALSE:
        return word in _TRUE
    raise ValueError(f"{raw!r} is not one of {', '.join(sorted(_TRUE | _FALSE))}")


def _shown(field: dataclasses.Field[Any], spec: Option) -> str:
    if spec.default_help is not None:
        return spec.default_help
    value = field.default
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return ", ".join(str(v) for v in value)
    return str(value)
