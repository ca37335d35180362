"""Seeded scalar values for JSON Schema types: strings (formats, lengths, patterns),
integers and numbers (bounds, multipleOf), booleans and null."""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

# Words for strings when the prompt gives none, and places for keys that name one.
FALLBACK_WORDS = (
    "alpha", "amber", "bridge", "cedar", "delta", "ember", "falcon", "garden", "harbor",
    "island", "juniper", "lantern", "meadow", "nebula", "orchid", "pebble", "quartz",
    "river", "summit", "timber", "valley", "willow",
)  # fmt: skip
PLACES = ("Paris", "London", "Tokyo", "Berlin", "Lisbon", "Toronto", "Sydney", "Nairobi")
_PLACE_KEYS = ("city", "location", "place", "country", "region", "town", "destination")
_NAME_KEYS = ("name", "author", "user", "person", "title")
# Numbers without bounds are drawn from [0, DEFAULT_SPAN]; with one bound, within
# DEFAULT_SPAN of it.
DEFAULT_SPAN = 100
# A pattern is honoured when one of this many candidates matches it.
PATTERN_TRIES = 40
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")


def prompt_words(text: str) -> tuple[str, ...]:
    """The words of `text` that string values may reuse."""
    return tuple(_WORD.findall(text))


def word(rng: random.Random, words: Sequence[str]) -> str:
    return rng.choice(words or FALLBACK_WORDS).lower()


def phrase(rng: random.Random, key: str, words: Sequence[str]) -> str:
    """A short string fitting a property named `key`: a place for "city", a capitalised
    word for "name", else one to three words, taken from the prompt where it has any."""
    key = key.lower()
    if any(part in key for part in _PLACE_KEYS):
        capitals = [w for w in words[1:] if w[0].isupper()]
        return rng.choice(capitals or PLACES)
    if any(part in key for part in _NAME_KEYS):
        return word(rng, words).capitalize()
    return " ".join(word(rng, words) for _ in range(rng.randint(1, 3)))


def scalar(
    kind: str, schema: Mapping[str, Any], rng: random.Random, key: str, words: Sequence[str]
) -> Any:
    """A value of JSON type `kind` valid against `schema`'s keywords for that type."""
    if kind == "integer":
        return integer(schema, rng)
    if kind == "number":
        return number(schema, rng)
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    return string(schema, rng, key, words)


def string(schema: Mapping[str, Any], rng: random.Random, key: str, words: Sequence[str]) -> str:
    write = FORMATS.get(str(schema.get("format", "")))
    if write is not None:
        return write(rng)
    pattern = schema.get("pattern")
    candidates = (_fit(schema, phrase(rng, key, words), rng, words) for _ in range(PATTERN_TRIES))
    if pattern is None:
        return next(candidates)
    matcher = re.compile(str(pattern))
    tried = [*candidates, *(f(rng) for f in FORMATS.values()), str(rng.randint(0, 99999))]
    return next((c for c in tried if matcher.search(c)), tried[0])


def _fit(schema: Mapping[str, Any], text: str, rng: random.Random, words: Sequence[str]) -> str:
    """`text` lengthened with more words to minLength, cut to maxLength."""
    shortest = int(schema.get("minLength", 0))
    while len(text) < shortest:
        text += " " + word(rng, words)
    longest = schema.get("maxLength")
    if longest is not None:
        text = text[: int(longest)]
        if len(text.rstrip()) >= shortest:
            text = text.rstrip()
    return text


def _number_of(value: object) -> float | None:
    """`value` if it is a JSON number (not a boolean), else None."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _bounds(schema: Mapping[str, Any], step: float) -> tuple[float, float]:
    """The inclusive range a number may take; exclusive bounds move in by `step`."""
    low, high = schema.get("minimum"), schema.get("maximum")
    exclusive_low, exclusive_high = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    if exclusive_low is True:  # draft 4: a flag on minimum
        low, exclusive_low = None, low
    if exclusive_high is True:
        high, exclusive_high = None, high
    lows = [_number_of(low), _add(_number_of(exclusive_low), step)]
    highs = [_number_of(high), _add(_number_of(exclusive_high), -step)]
    floor = max((v for v in lows if v is not None), default=None)
    ceiling = min((v for v in highs if v is not None), default=None)
    if floor is None:
        floor = 0.0 if ceiling is None or ceiling >= 0 else ceiling - DEFAULT_SPAN
    if ceiling is None:
        ceiling = floor + DEFAULT_SPAN
    return floor, max(floor, ceiling)


def _add(value: float | None, step: float) -> float | None:
    return None if value is None else value + step


def _multiples(schema: Mapping[str, Any], low: float, high: float) -> tuple[float, int, int]:
    """multipleOf (0: none) and the range of k with k * multipleOf in [low, high]."""
    step = _number_of(schema.get("multipleOf")) or 0.0
    if step <= 0:
        return 0.0, 1, 0
    return step, math.ceil(low / step), math.floor(high / step)


def integer(schema: Mapping[str, Any], rng: random.Random) -> int:
    low, high = _bounds(schema, 1.0)
    step, first, last = _multiples(schema, low, high)
    if first <= last:
        return int(rng.randint(first, last) * step)
    return rng.randint(math.ceil(low), max(math.ceil(low), math.floor(high)))


def number(schema: Mapping[str, Any], rng: random.Random) -> float | int:
    low, high = _bounds(schema, 0.01)
    step, first, last = _multiples(schema, low, high)
    for k in (rng.randint(first, last) for _ in range(8)) if first <= last else ():
        value = k * step
        if value / step == int(value / step):  # what validators check, float error included
            return int(value) if step.is_integer() else value
    value = round(rng.uniform(low, high), 2)
    return min(max(value, low), high)


def _date(rng: random.Random) -> str:
    return f"{rng.randint(2015, 2030):04d}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def _time(rng: random.Random) -> str:
    return f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}Z"


def _uuid(rng: random.Random) -> str:
    hexa = f"{rng.getrandbits(128):032x}"
    version = "4" + hexa[13:16]
    variant = "89ab"[int(hexa[16], 16) % 4] + hexa[17:20]
    return f"{hexa[:8]}-{hexa[8:12]}-{version}-{variant}-{hexa[20:]}"


FORMATS: dict[str, Callable[[random.Random], str]] = {
    "date": _date,
    "time": _time,
    "date-time": lambda rng: f"{_date(rng)}T{_time(rng)}",
    "email": lambda rng: f"{rng.choice(FALLBACK_WORDS)}@example.com",
    "uuid": _uuid,
    "uri": lambda rng: f"https://example.com/{rng.choice(FALLBACK_WORDS)}",
    "url": lambda rng: f"https://example.com/{rng.choice(FALLBACK_WORDS)}",
    "hostname": lambda rng: f"{rng.choice(FALLBACK_WORDS)}.example.com",
    "ipv4": lambda rng: ".".join(str(rng.randint(1, 254)) for _ in range(4)),
}
