"""The paged KV cache of one model: fixed-size blocks, reference counts and a prefix cache."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Sequence

# Tokens per KV block: vLLM's default block_size on CUDA.
BLOCK_TOKENS = 16


def blocks_for(tokens: int) -> int:
    """Blocks holding `tokens` tokens of KV cache."""
    return -(-tokens // BLOCK_TOKENS)


class BlockPool:
    """`capacity` blocks; full prompt blocks are kept by content hash after their use.

    A block is in use while a sequence holds a reference, cached (evictable, in LRU
    order) once the last reference goes if it holds a full block of known content,
    and free otherwise. Allocation takes free blocks first, then evicts the least
    recently used cached ones, as vLLM's prefix caching does.
    """

    def __init__(self, capacity: int, *, caching: bool = True) -> None:
        self.capacity = capacity
        self.caching = caching
        self._free = list(range(capacity - 1, -1, -1))
        self._refs = [0] * capacity
        self._key_of: dict[int, Hashable] = {}
        self._block_of: dict[Hashable, int] = {}
        self._evictable: OrderedDict[int, None] = OrderedDict()

    @property
    def available(self) -> int:
        """Blocks an allocation may take now: free plus evictable cached blocks."""
        return len(self._free) + len(self._evictable)

    @property
    def used(self) -> int:
        """Blocks referenced by live sequences."""
        return self.capacity - self.available

    def cached_prefix(self, keys: Sequence[Hashable]) -> int:
        """Blocks of the longest cached prefix of `keys`, touching nothing (for dispatch)."""
        count = 0
        if self.caching:
            for key in keys:
                if key not in self._block_of:
                    break
                count += 1
        return count

    def match(self, keys: Sequence[Hashable]) -> list[int]:
        """Takes a reference on the cached blocks of the longest cached prefix of `keys`."""
        hits: list[int] = []
        if not self.caching:
            return hits
        for key in keys:
            block = self._block_of.get(key)
            if block is None:
                break
            hits.append(block)
        for block in hits:
            self._take(block)
        return hits

    def allocate(self, count: int) -> list[int] | None:
        """`count` new blocks (one reference each), or None (and nothing taken)."""
        if count > self.available:
            return None
        taken: list[int] = []
        for _ in range(count):
            block = self._free.pop() if self._free else self._evict()
            self._refs[block] = 1
            taken.append(block)
        return taken

    def register(self, block: int, key: Hashable) -> None:
        """Records that `block` holds the full block `key`, so later prompts reuse it."""
        if self.caching and key not in self._block_of and block not in self._key_of:
            self._key_of[block] = key
            self._block_of[key] = block

    def release(self, blocks: Sequence[int]) -> None:
        """Drops one reference on each block; the last one frees or caches it."""
        for block in reversed(blocks):  # the tail of a prompt is evicted first
            self._refs[block] -= 1
            if self._refs[block] > 0:
                continue
            if block in self._key_of:
                self._evictable[block] = None
            else:
                self._free.append(block)

    def _take(self, block: int) -> None:
        if self._refs[block] == 0:
            del self._evictable[block]
        self._refs[block] += 1

    def _evict(self) -> int:
        block, _ = self._evictable.popitem(last=False)
        del self._block_of[self._key_of.pop(block)]
        return block
