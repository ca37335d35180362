"""Shape checks of JSON request values that answer 400 naming the bad `param`, as OpenAI does.

Types only, and the ranges of the contract's field types (a uint32 cannot carry -1): the
bounds a value must keep are the core's, which names the `param` in its own refusal.
Each check takes a value that is present (not null); fields.py decides what absence means.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson

from gpucloud_gateway.errors import ApiError, invalid

UINT32_MAX = (1 << 32) - 1
INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
_TYPE_NAMES = {"str": "a string", "dict": "an object", "list": "an array", "bool": "a boolean"}


def json_object(raw: bytes) -> dict[str, Any]:
    """The request body as a JSON object, or a 400."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise invalid(
            "We could not parse the JSON body of your request. (HINT: This likely means you "
            "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.)",
            code="invalid_json",
        ) from None
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.", code="invalid_json")
    return body


def type_error(param: str, expected: str, value: object) -> ApiError:
    got = "null" if value is None else type(value).__name__
    got = _TYPE_NAMES.get(got, f"a {got}")
    return invalid(
        f"Invalid type for '{param}': expected {expected}, but got {got} instead.",
        param,
        "invalid_type",
    )


def missing(param: str) -> ApiError:
    return invalid(f"Missing required parameter: '{param}'.", param, "missing_required")


def decimal(value: object, param: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise type_error(param, "a decimal", value)
    return float(value)


def integer(value: object, param: str, low: int, high: int) -> int:
    """An integer within `low`..`high`: the range of the proto field that carries it."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise type_error(param, "an integer", value)
    if value < low:
        raise invalid(
            f"Invalid '{param}': integer below minimum value. Expected a value >= {low}, "
            f"but got {value} instead.",
            param,
            "integer_below_min_value",
        )
    if value > high:
        raise invalid(
            f"Invalid '{param}': integer above maximum value. Expected a value <= {high}, "
            f"but got {value} instead.",
            param,
            "integer_above_max_value",
        )
    return value


def text(value: object, param: str) -> str:
    if not isinstance(value, str):
        raise type_error(param, "a string", value)
    return value


def string(body: Mapping[str, Any], name: str, param: str, *, required: bool = False) -> str | None:
    """Member `name` of a nested object, a string; for objects without a declared table."""
    value = body.get(name)
    if value is None:
        if required:
            raise missing(param)
        return None
    return text(value, param)


def flag(value: object, param: str) -> bool:
    if not isinstance(value, bool):
        raise type_error(param, "a boolean", value)
    return value


def strings(value: object, param: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise type_error(param, "an array of strings", value)
    return value


def moment(value: object, param: str) -> datetime:
    """An ISO 8601 date-time; naive values are taken as UTC by the caller."""
    try:
        return datetime.fromisoformat(text(value, param))
    except ValueError:
        raise invalid(
            f"Invalid '{param}': expected an ISO 8601 date-time.", param, "invalid_value"
        ) from None
