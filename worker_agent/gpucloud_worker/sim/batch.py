"""The running batch shared by concurrent generations, and its load over time."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from gpucloud_worker.sim.models import ModelSpec


@dataclass(frozen=True, slots=True)
class LoadSample:
    """Load since the previous sample: busy share of the time and mean batch size."""

    busy: float
    mean_sequences: float


@dataclass(slots=True)
class _ModelLoad:
    sequences: int = 0
    context_tokens: int = 0


class Batch:
    """Sequences on the GPU per model, with the context each model's KV cache holds.

    It also integrates busy time (at least one sequence) and sequence-seconds, so a
    heartbeat reports the load over its interval rather than an instant.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._loads: dict[ModelSpec, _ModelLoad] = {}
        self._sequences = 0
        self._changed_at = clock()
        self._busy_s = 0.0
        self._sequence_s = 0.0
        self._mark = (self._changed_at, 0.0, 0.0)

    @property
    def sequences(self) -> int:
        return self._sequences

    def loads(self) -> dict[ModelSpec, tuple[int, int]]:
        """Model -> (sequences, context tokens), for models with sequences running."""
        return {
            model: (load.sequences, load.context_tokens)
            for model, load in self._loads.items()
            if load.sequences > 0
        }

    def join(self, model: ModelSpec, sequences: int, context_tokens: int) -> Lease:
        """Adds a generation's sequences; the Lease takes them out again."""
        lease = Lease(self, model)
        lease.change(sequences, context_tokens)
        return lease

    def sample(self) -> LoadSample:
        """The load since the previous sample (or since the batch was created)."""
        self._advance()
        then, busy_then, sequence_then = self._mark
        self._mark = (self._changed_at, self._busy_s, self._sequence_s)
        elapsed = self._changed_at - then
        if elapsed <= 0:
            return LoadSample(busy=0.0, mean_sequences=0.0)
        return LoadSample(
            busy=(self._busy_s - busy_then) / elapsed,
            mean_sequences=(self._sequence_s - sequence_then) / elapsed,
        )

    def _apply(self, model: ModelSpec, sequences: int, context_tokens: int) -> None:
        self._advance()
        load = self._loads.setdefault(model, _ModelLoad())
        load.sequences += sequences
        load.context_tokens += context_tokens
        self._sequences += sequences

    def _advance(self) -> None:
        now = self._clock()
        elapsed = now - self._changed_at
        if self._sequences > 0:
            self._busy_s += elapsed
            self._sequence_s += elapsed * self._sequences
        self._changed_at = now


class Lease:
    """One generation's share of the batch; `release` (in a finally) returns all of it."""

    def __init__(self, batch: Batch, model: ModelSpec) -> None:
        self._batch = batch
        self._model = model
        self.sequences = 0
        self.context_tokens = 0

    def change(self, sequences: int, context_tokens: int) -> None:
        """Adds (or with negative numbers removes) sequences and context tokens."""
        self.sequences += sequences
        self.context_tokens += context_tokens
        self._batch._apply(self._model, sequences, context_tokens)

    def release(self) -> None:
        self.change(-self.sequences, -self.context_tokens)
