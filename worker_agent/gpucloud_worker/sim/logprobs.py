"""Seeded log probabilities for the sim's tokens and the likeliest alternatives there."""

from __future__ import annotations

import math
import random

from gpucloud_worker.backend import TokenLogprob, TopLogprob
from gpucloud_worker.sim.text import VOCABULARY

# The sampled token is the likeliest one this often; otherwise one of the next few.
ARGMAX_SHARE = 0.85
RUNNERS_UP = 3
# The likeliest token's probability is drawn from this range; the rest of the mass is
# shared out geometrically, so the probabilities of any list sum to at most 1.
TOP_PROBABILITY = (0.35, 0.999)
DECIMALS = 6


class Logprobs:
    """Gives each token a log probability and `top` alternatives, sorted likeliest first.

    The distribution at each position is drawn from `seed`, so a seeded request
    reports the same figures again. The token itself is among the alternatives when
    it ranks within `top` (it is the likeliest ARGMAX_SHARE of the time).
    """

    def __init__(self, seed: int, top: int) -> None:
        self._rng = random.Random(seed)
        self._top = max(0, top)

    def of(self, token: str) -> TokenLogprob:
        rng = self._rng
        probabilities = self._distribution(max(self._top, RUNNERS_UP) + 1)
        rank = 0 if rng.random() < ARGMAX_SHARE else rng.randint(1, RUNNERS_UP)
        others = iter(self._alternatives(token, len(probabilities) - 1))
        names = [token if i == rank else next(others) for i in range(len(probabilities))]
        top = tuple(
            TopLogprob(name, _log(p))
            for name, p in zip(names[: self._top], probabilities, strict=False)
        )
        return TokenLogprob(token, _log(probabilities[rank]), top)

    def _distribution(self, size: int) -> list[float]:
        """`size` probabilities, largest first, summing to less than 1."""
        first = self._rng.uniform(*TOP_PROBABILITY)
        rest, left = [], 1.0 - first
        for _ in range(size - 1):
            share = left * self._rng.uniform(0.3, 0.7)
            rest.append(share)
            left -= share
        return sorted([first, *rest], reverse=True)

    def _alternatives(self, token: str, count: int) -> list[str]:
        """Other vocabulary words, spelled like `token` (a leading space, a capital)."""
        lead = token[: len(token) - len(token.lstrip())]
        core = token.strip()
        capital = core[:1].isupper()
        words = [w for w in VOCABULARY if w.lower() != core.lower()]
        chosen = self._rng.sample(words, min(count, len(words)))
        return [lead + (w.capitalize() if capital else w.lower()) for w in chosen]


def _log(probability: float) -> float:
    return min(0.0, round(math.log(probability), DECIMALS))
