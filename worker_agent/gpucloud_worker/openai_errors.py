"""The openai backend's reading of its upstream's errors: whose fault, and what to tell
the client (the upstream's own message, for a request it refuses)."""

from __future__ import annotations

import logging
import re
from typing import Any

import httpx

from gpucloud_worker.backend import BackendError, ErrorKind

log = logging.getLogger(__name__)

_MAX_ERROR_CHARS = 500
_SHOWN_ERRORS = 3
_BUILTIN_TYPES = frozenset({"str", "int", "float", "bool", "list", "dict", "none"})
# llama-cpp-python answers a body its schema refuses with HTTP 500, the errors' repr
# as the message: "2 validation errors:\n  {'type': ..., 'loc': ('body', 'input'), 'msg':
# 'Input should be a valid string', ...}" and a line of its traceback.
_VALIDATION_TEXT = re.compile(r"\d+ validation errors?\b")
_VALIDATION_ENTRY = re.compile(r"'loc': \((?P<loc>[^)]*)\), 'msg': (?P<q>['\"])(?P<msg>.*?)(?P=q)")


def connection_failure(error: httpx.HTTPError) -> str:
    """What went wrong on the way to or from the upstream."""
    if isinstance(error, httpx.TimeoutException):
        return f"upstream timed out ({type(error).__name__})"
    if isinstance(error, httpx.DecodingError):
        return f"upstream sent a malformed stream ({error})"
    return f"upstream connection failed ({type(error).__name__})"


async def status_error(response: httpx.Response) -> BackendError:
    """Maps an upstream HTTP error status: the client's fault, a retry, or ours."""
    await response.aread()
    status = response.status_code
    message, details = _error_body(response)
    upstream = {"upstream_status": str(status)}
    if status in (401, 403):
        # The worker's upstream key is wrong: not the client's fault, and no other
        # attempt on this worker would fare better.
        log.error("upstream rejected the worker's credentials: HTTP %d %s", status, message)
        return BackendError(ErrorKind.INTERNAL, "the upstream rejected the worker", upstream)
    refused = validation_errors(message) if status >= 500 else None
    if refused is not None:  # llama-cpp-python's way of saying 422
        message, details = refused
    elif status in (408, 429) or status >= 500:
        return BackendError(
            ErrorKind.RETRYABLE, f"upstream HTTP {status}: {message}", details | upstream
        )
    return BackendError(ErrorKind.INVALID_REQUEST, message, details | upstream)


def error_fields(error: Any) -> tuple[str, int, dict[str, str]]:
    """The message, HTTP-like status and code/param details of an OpenAI-style error
    object (or of anything else)."""
    if not isinstance(error, dict):
        return str(error)[:_MAX_ERROR_CHARS], 0, {}
    message = error.get("message") or error.get("msg") or str(error)
    code = error.get("code")
    details = {
        key: value
        for key, value in (("code", code), ("param", error.get("param")))
        if isinstance(value, str) and value
    }
    status = code if isinstance(code, int) else 0
    return str(message)[:_MAX_ERROR_CHARS], status, details


def validation_errors(message: str) -> tuple[str, dict[str, str]] | None:
    """A request-validation failure that an upstream reported as its own (HTTP 500),
    as a message naming the fields, without the traceback; None if it is none."""
    if not _VALIDATION_TEXT.match(message):
        return None
    found = [(_param(m["loc"].split(", ")), m["msg"]) for m in _VALIDATION_ENTRY.finditer(message)]
    return _validation_message(found) if found else ("the upstream refused the request", {})


def _error_body(response: httpx.Response) -> tuple[str, dict[str, str]]:
    try:
        body = response.json()
    except ValueError:
        return response.text[:_MAX_ERROR_CHARS] or response.reason_phrase, {}
    if not isinstance(body, dict):
        return str(body)[:_MAX_ERROR_CHARS], {}
    detail = body.get("detail")
    if "error" not in body and isinstance(detail, list):  # FastAPI's 422
        return _validation_message(
            [(_param(e.get("loc") or ()), str(e.get("msg"))) for e in detail if isinstance(e, dict)]
        )
    message, _, details = error_fields(body.get("error", detail if detail is not None else body))
    return message, details


def _param(loc: Any) -> str:
    """A validation error's location as a parameter path: ("body", "messages", 1,
    "ChatCompletionRequestUserMessage", "role") is messages.1.role, ("body", "input",
    "list[str]", 0) input.0: the members of a union that pydantic tried (type names)
    are no fields."""
    parts = (str(p).strip().strip("'\"") for p in loc)
    return ".".join(p for p in parts if p and p != "body" and not _type_name(p))


def _type_name(part: str) -> bool:
    return part[0].isupper() or "[" in part or part in _BUILTIN_TYPES


def _validation_message(errors: list[tuple[str, str]]) -> tuple[str, dict[str, str]]:
    unique = list(dict.fromkeys(f"{param}: {msg}" if param else msg for param, msg in errors))
    message = "; ".join(unique[:_SHOWN_ERRORS])
    if len(unique) > _SHOWN_ERRORS:
        message += f" (and {len(unique) - _SHOWN_ERRORS} more)"
    first = errors[0][0] if errors else ""
    return message[:_MAX_ERROR_CHARS], {"param": first} if first else {}
