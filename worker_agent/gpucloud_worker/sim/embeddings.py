"""Deterministic unit vectors for the sim's embedding models.

A text's vector is the sum of one fixed random direction per word (so texts that
share words point alike) and a direction for the whole text (so no two different
texts give the same vector), normalised. Token ids stand for words. A shorter vector
(Matryoshka) is the first `dimensions` values, normalised again, as such models cut.
"""

from __future__ import annotations

import hashlib
import math
import re
from array import array
from functools import lru_cache

from gpucloud_common.tokens import text_tokens

EmbeddingInput = str | tuple[int, ...]

# Weight of the whole-text direction against the words' (times sqrt(word count), so
# it keeps its share in long texts): texts with the same words in another order have
# a cosine similarity of about 1 / (1 + TEXT_WEIGHT**2).
TEXT_WEIGHT = 0.5
_INT16 = 32768.0
_WORD = re.compile(r"\w+")


def input_tokens(item: EmbeddingInput) -> int:
    """An input's tokens: the ids given, or the estimate for text."""
    return len(item) if isinstance(item, tuple) else text_tokens(item)


def vector(model_id: str, item: EmbeddingInput, size: int, dimensions: int) -> tuple[float, ...]:
    """The unit vector `model_id` (of `size` dimensions) gives `item`, cut to `dimensions`."""
    if isinstance(item, tuple):
        features, whole = [f"#{token}" for token in item], ",".join(map(str, item))
    else:
        features, whole = _WORD.findall(item.lower()), item
    total = [
        TEXT_WEIGHT * math.sqrt(max(1, len(features))) * x
        for x in _direction(model_id, "\x1d" + whole, size)
    ]
    for feature in features:
        total = [a + b for a, b in zip(total, _direction(model_id, feature, size), strict=True)]
    return _unit(total[:dimensions])


@lru_cache(maxsize=16_384)
def _direction(model_id: str, feature: str, size: int) -> tuple[float, ...]:
    """A fixed pseudo-random direction per model and feature (uniform in each axis)."""
    digest = hashlib.shake_256(f"{model_id}\x1f{feature}".encode()).digest(2 * size)
    return tuple(value / _INT16 for value in array("h", digest))


def _unit(values: list[float]) -> tuple[float, ...]:
    norm = math.sqrt(sum(x * x for x in values))
    if norm == 0:
        return (1.0,) + (0.0,) * (len(values) - 1)
    return tuple(x / norm for x in values)
