"""Prefix affinity: which workers were recently given which prompt prefixes.

A prompt is named by chained hashes of its leading blocks (`block_hashes`): the
hash of block i covers blocks 0..i, so two prompts share their first k hashes
exactly when they share their first k blocks, as vLLM names its KV blocks. The
core cannot see a worker's prefix cache; it remembers what it sent each worker
lately (`PrefixMemory`), which is where that cache most likely holds the prefix.

Memory is bounded: each worker keeps at most `per_worker` hashes (least recently
sent forgotten first, leading blocks last) and all workers together at most
`total`, the share of each shrinking as workers join.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence

BLOCK_CHARS = 64  # about 16 tokens: one vLLM KV block of English text
MAX_BLOCKS = 64  # hashes per prompt: the first 4 KiB of it, so the work per request is bounded
PER_WORKER_HASHES = 16384  # 256 prompts of MAX_BLOCKS
TOTAL_HASHES = 1 << 18
# The dispatch rule: among workers with a free slot, the one holding the longest leading
# part of the prompt wins, unless its load (busy share of its slots) exceeds the least
# loaded worker's by more than this; then the prefix is not worth the wait.
LOAD_SLACK = 0.25


def block_hashes(model: str, messages: Iterable[tuple[str, str]]) -> tuple[int, ...]:
    """Chained hashes of the first MAX_BLOCKS full BLOCK_CHARS blocks of the messages'
    "role:content" text (joined by newlines); a shorter tail block is not hashed."""
    text = "\n".join(f"{role}:{content}" for role, content in messages)
    data = text[: BLOCK_CHARS * MAX_BLOCKS].encode()
    chain = hashlib.blake2b(model.encode(), digest_size=8)
    hashes: list[int] = []
    for start in range(0, len(data) - BLOCK_CHARS + 1, BLOCK_CHARS):
        chain.update(data[start : start + BLOCK_CHARS])
        hashes.append(int.from_bytes(chain.copy().digest(), "big"))
    return tuple(hashes)


class PrefixMemory:
    """Per worker, the block hashes it was recently sent; an index hash -> workers finds
    the longest match without looking at workers that lack the first block."""

    def __init__(self, per_worker: int = PER_WORKER_HASHES, total: int = TOTAL_HASHES) -> None:
        self._per_worker = per_worker
        self._total = total
        self._sent: dict[str, OrderedDict[int, None]] = {}
        self._holders: dict[int, set[str]] = {}

    def __len__(self) -> int:
        """Hashes remembered, all workers together."""
        return sum(len(hashes) for hashes in self._sent.values())

    @property
    def cap(self) -> int:
        """Hashes each worker may keep now."""
        return min(self._per_worker, self._total // max(1, len(self._sent)))

    def remember(self, worker_id: str, hashes: Sequence[int]) -> None:
        """`worker_id` was sent a prompt with these leading block hashes."""
        if not hashes:
            return
        sent = self._sent.get(worker_id)
        if sent is None:
            sent = self._sent[worker_id] = OrderedDict()
            for other in self._sent:  # a smaller share for everyone: rare, at a join
                self._trim(other)
        for value in reversed(hashes):  # leading blocks are the most recent: kept longest
            sent[value] = None
            sent.move_to_end(value)
            self._holders.setdefault(value, set()).add(worker_id)
        self._trim(worker_id)

    def forget(self, worker_id: str) -> None:
        """The worker went away; its cache with it."""
        for value in self._sent.pop(worker_id, {}):
            self._drop(value, worker_id)

    def longest(
        self, hashes: Sequence[int], eligible: Callable[[str], bool]
    ) -> tuple[set[str], int]:
        """The eligible workers sent the longest leading run of `hashes`, and its length in
        blocks; (empty, 0) when none was sent even the first block. Only the workers sent
        the first block are looked at."""
        best: set[str] = set()
        depth = 0
        holders = self._holders.get(hashes[0], set()) if hashes else set()
        alive = set(filter(eligible, holders))
        for value in hashes[1:]:
            if not alive:
                break
            best, depth = alive, depth + 1
            alive = alive & self._holders.get(value, set())
        if alive:
            best, depth = alive, len(hashes)
        return best, depth

    def _trim(self, worker_id: str) -> None:
        sent = self._sent[worker_id]
        while len(sent) > self.cap:
            value, _ = sent.popitem(last=False)
            self._drop(value, worker_id)

    def _drop(self, value: int, worker_id: str) -> None:
        holders = self._holders.get(value)
        if holders is not None:
            holders.discard(worker_id)
            if not holders:
                del self._holders[value]
