"""Shape checks of JSON request fields that answer 400 naming the bad `param`, as OpenAI does.

Types only, and the ranges of the contract's field types (a uint32 cannot carry -1): the
bounds a value must keep are the core's, which names the `param` in its own refusal.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from gpucloud_gateway.errors import ApiError, invalid

UINT32_MAX = (1 << 32) - 1
INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1


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
    got = {"str": "a string", "dict": "an object", "list": "an array", "bool": "a boolean"}.get(
        got, f"a {got}"
    )
    return invalid(
        f"Invalid type for '{param}': expected {expected}, but got {got} instead.",
        param,
        "invalid_type",
    )


def decimal(body: dict[str, Any], name: str) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise type_error(name, "a decimal", value)
    return float(value)


def integer(body: dict[str, Any], name: str, low: int, high: int) -> int | None:
    """An integer within `low`..`high`: the range of the proto field that carries it."""
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise type_error(name, "an integer", value)
    if value < low:
        raise invalid(
            f"Invalid '{name}': integer below minimum value. Expected a value >= {low}, "
            f"but got {value} instead.",
            name,
            "integer_below_min_value",
        )
    if value > high:
        raise invalid(
            f"Invalid '{name}': integer above maximum value. Expected a value <= {high}, "
            f"but got {value} instead.",
            name,
            "integer_above_max_value",
        )
    return value


def string(body: dict[str, Any], name: str, param: str, *, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise invalid(f"Missing required parameter: '{param}'.", param, "missing_required")
        return None
    if not isinstance(value, str):
        raise type_error(param, "a string", value)
    return value


def flag(body: dict[str, Any], name: str, param: str) -> bool:
    value = body.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise type_error(param, "a boolean", value)
    return value


def string_list(body: dict[str, Any], name: str) -> list[str]:
    value = body.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise type_error(name, "an array of strings", value)
    return list(value)


def moment(body: dict[str, Any], name: str) -> datetime | None:
    """An ISO 8601 date-time field; naive values are taken as UTC by the caller."""
    text = string(body, name, name)
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise invalid(
            f"Invalid '{name}': expected an ISO 8601 date-time.", name, "invalid_value"
        ) from None
