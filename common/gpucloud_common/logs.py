"""Process-wide structured logging: JSON lines off a terminal, readable lines on one.

Any `extra={...}` fields given to a log call are written as fields of the line,
so callers log facts (`request_id`, `status`, `total_ms`) rather than prose.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, Literal, TextIO

import orjson

LogFormat = Literal["auto", "json", "console"]

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
    | {"message", "asctime", "color_message", "taskName"}
)


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The `extra=` fields of a record, in the order they were given."""
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, then the extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        line.update(record_fields(record))
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


class ConsoleFormatter(logging.Formatter):
    """`12:00:01 INFO  gateway  request  status=200 total_ms=3.1` for people."""

    def format(self, record: logging.LogRecord) -> str:
        clock = time.strftime("%H:%M:%S", time.localtime(record.created))
        fields = " ".join(f"{k}={_console_value(v)}" for k, v in record_fields(record).items())
        text = f"{clock} {record.levelname:<5} {record.name:<18} {record.getMessage()}"
        if fields:
            text = f"{text}  {fields}"
        if record.exc_info:
            text = f"{text}\n{self.formatException(record.exc_info)}"
        return text


def level_name(text: str) -> str:
    """`--log-level`: a logging level by name, any case (`info`, `WARNING`)."""
    name = text.strip().lower()
    if name.upper() not in logging.getLevelNamesMapping():
        raise ValueError(f"{text!r} is not a level: debug, info, warning, error or critical")
    return name


def _console_value(value: object) -> str:
    text = str(value)
    return f'"{text}"' if (" " in text or not text) else text


def setup_logging(
    level: str = "info", fmt: LogFormat = "auto", stream: TextIO | None = None
) -> None:
    """Routes every logger (uvicorn's and grpc's included) to one handler on stderr."""
    out = sys.stderr if stream is None else stream
    use_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter() if use_json else ConsoleFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # uvicorn configures its own handlers unless told otherwise; send them to ours.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    # One line per HTTP call made by the process itself is chatter, not news.
    logging.getLogger("httpx").setLevel(max(root.level, logging.WARNING))
