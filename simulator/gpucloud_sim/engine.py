"""GpuEngine: one simulated worker's GPU timeline, stepped like vLLM's engine core."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

from gpucloud_sim import sched
from gpucloud_sim.cost import Deployment, step_cost
from gpucloud_sim.gpus import GIB, GpuModel
from gpucloud_sim.kv import BLOCK_TOKENS, blocks_for
from gpucloud_sim.memory import RUNTIME_RESERVE_BYTES
from gpucloud_sim.models import ModelSpec
from gpucloud_sim.sched import EngineConfig, ModelQueue

# Memory in use besides weights and KV cache (CUDA context, allocator, CUDA graphs);
# shown in heartbeats only: the KV pool is sized from gpu_memory_utilization.
RUNTIME_OVERHEAD_BYTES = 1 * GIB


class ContextTooLong(ValueError):
    """prompt + max_tokens can never fit the model's context or the KV cache."""

    def __init__(self, limit: int, prompt_tokens: int, max_tokens: int) -> None:
        super().__init__(f"{prompt_tokens} + {max_tokens} tokens exceed the limit of {limit}")
        self.limit = limit


@dataclass(frozen=True, slots=True)
class StepResult:
    """One step on the timeline and the sequences it gave a token or finished."""

    start_s: float
    seconds: float
    emitted: list[sched.Seq]
    finished: list[sched.Seq]


@dataclass(frozen=True, slots=True)
class LoadSample:
    """Load since the previous sample: busy share of the time and mean batch size."""

    busy: float
    mean_sequences: float


class GpuEngine:
    """The timeline of `gpu_count` GPUs of one kind serving `models`.

    Time is simulated seconds in `now`; nothing here sleeps. A caller adds sequences
    and calls `step()`, which runs the next step (the models sharing the GPU take
    turns), advances `now` by its duration and returns the tokens it produced. The
    KV cache left after weights is split evenly between the generation models, as
    when one vLLM process per model shares a GPU; an embedding model first gets the
    blocks of its forward passes only (embedding_blocks), as it keeps no cache.
    """

    def __init__(
        self,
        gpu: GpuModel,
        models: Sequence[ModelSpec],
        *,
        gpu_count: int = 1,
        precision: str = "bf16",
        config: EngineConfig | None = None,
    ) -> None:
        if not models:
            raise ValueError("an engine serves at least one model")
        self.config = config or EngineConfig.for_gpu(gpu)
        self.gpu, self.gpu_count = gpu, gpu_count
        self.deployments = {m.id: Deployment(m, gpu, gpu_count, precision) for m in models}
        self.weight_bytes = sum(d.weight_bytes for d in self.deployments.values())
        self._queues = {
            model_id: ModelQueue(blocks, self.config)
            for model_id, blocks in self._pool_blocks(models).items()
        }
        self._order = list(self._queues)
        self._turn = 0
        self.now = 0.0
        self._busy = _Integral()
        self._sequences = _Integral()
        self._mark = (0.0, 0.0, 0.0)

    @property
    def kv_bytes(self) -> float:
        """Device memory for the KV cache: the utilisation share less the weights and
        the runtime reserve (memory.RUNTIME_RESERVE_BYTES per GPU)."""
        usable = self.gpu.memory_bytes * self.gpu_count * self.config.gpu_memory_utilization
        return usable - self.weight_bytes - RUNTIME_RESERVE_BYTES * self.gpu_count

    def _pool_blocks(self, models: Sequence[ModelSpec]) -> dict[str, int]:
        """KV blocks per model: embedding models' forward passes first, the rest shared
        evenly by the generation models."""
        blocks = {m.id: self.embedding_blocks(m) for m in models if m.embeds}
        held = sum(blocks[m.id] * m.kv_bytes_per_token * BLOCK_TOKENS for m in models if m.embeds)
        share = (self.kv_bytes - held) / max(1, len(models) - len(blocks))
        for m in models:
            if not m.embeds:
                blocks[m.id] = max(0, int(share // (m.kv_bytes_per_token * BLOCK_TOKENS)))
        return {m.id: blocks[m.id] for m in models}

    def embedding_blocks(self, model: ModelSpec) -> int:
        """Blocks an embedding model's forward passes hold at most: a step's token budget,
        a partial block per sequence, and one longest input prefilled in chunks."""
        budget = blocks_for(self.config.max_num_batched_tokens)
        return budget + self.config.max_num_seqs + blocks_for(model.max_context)

    def context_limit(self, model: ModelSpec) -> int:
        """The longest sequence: the model's context, or less if the KV cache is smaller."""
        blocks = self._queue(model).pool.capacity
        return min(model.max_context, blocks * BLOCK_TOKENS)

    def cached_prefix_tokens(self, model: ModelSpec, keys: tuple[Hashable, ...]) -> int:
        """Prompt tokens a request with these block keys would find in the prefix cache
        now: what prefix-aware dispatch weighs against load."""
        return self._queue(model).pool.cached_prefix(keys) * BLOCK_TOKENS

    def add(
        self,
        model: ModelSpec,
        prompt_tokens: int,
        max_tokens: int,
        keys: tuple[Hashable, ...] = (),
        *,
        count: int = 1,
        on_token: Callable[[sched.Seq], None] | None = None,
        arrival_s: float | None = None,
    ) -> list[sched.Seq]:
        """Queues `count` sequences of one request; ContextTooLong if they can never run.

        `max_tokens` 0 is a prefill-only sequence (an embedding model's forward pass):
        it ends, its blocks freed, in the step that computes its last prompt token,
        and `on_token` is called once then. `arrival_s` (default `now`) is when the
        request arrived, for its latencies.
        """
        if prompt_tokens < 1 or max_tokens < 0:
            raise ValueError(
                f"prompt tokens must be >= 1 and max tokens >= 0 ({prompt_tokens}, {max_tokens})"
            )
        limit = self.context_limit(model)
        if prompt_tokens + max_tokens > limit:
            raise ContextTooLong(limit, prompt_tokens, max_tokens)
        queue = self._queue(model)
        arrival = self.now if arrival_s is None else arrival_s
        seqs = [
            sched.Seq(prompt_tokens, max_tokens, keys, arrival, index, on_token)
            for index in range(count)
        ]
        queue.waiting.extend(seqs)
        return seqs

    def abort(self, model: ModelSpec, seqs: Sequence[sched.Seq]) -> None:
        """Removes sequences that have not finished; their blocks are free at once."""
        queue = self._queue(model)
        for seq in seqs:
            seq.on_token = None
            if seq.state is not sched.State.DONE:
                queue.remove(seq)

    def live(self) -> list[sched.Seq]:
        """Every running or waiting sequence."""
        return [seq for q in self._queues.values() for seq in (*q.running, *q.waiting)]

    @property
    def live_sequences(self) -> int:
        return sum(queue.live for queue in self._queues.values())

    @property
    def preemptions(self) -> int:
        return sum(queue.preemptions for queue in self._queues.values())

    def has_work(self) -> bool:
        return any(queue.live for queue in self._queues.values())

    def advance_to(self, when: float) -> None:
        """Idle time: moves `now` forward to `when` (never back)."""
        self.now = max(self.now, when)

    def step(self) -> StepResult | None:
        """Runs the next step; None when no sequence is live."""
        for _ in range(len(self._order)):
            model_id = self._order[self._turn]
            self._turn = (self._turn + 1) % len(self._order)
            queue = self._queues[model_id]
            if queue.live:
                return self._run(self.deployments[model_id], queue)
        return None

    def _run(self, deployment: Deployment, queue: ModelQueue) -> StepResult:
        plan, work = queue.schedule()
        if not plan:
            raise RuntimeError("a live queue scheduled nothing: the KV pool is too small")
        seconds = step_cost(deployment, work).seconds
        start = self.now
        self.now += seconds
        self._busy.add(start, self.now, 1.0)
        self._sequences.add(start, self.now, float(len(plan)))
        emitted, finished = queue.commit(plan, self.now)
        return StepResult(start, seconds, emitted, finished)

    def kv_used_bytes(self) -> int:
        """KV cache held by live sequences (cached free blocks do not count)."""
        return sum(
            queue.pool.used * BLOCK_TOKENS * self.deployments[model_id].model.kv_bytes_per_token
            for model_id, queue in self._queues.items()
        )

    def memory_used_bytes(self) -> int:
        """Device memory in use on all GPUs together: runtime, weights and live KV."""
        runtime = RUNTIME_OVERHEAD_BYTES * self.gpu_count
        return runtime + self.weight_bytes + self.kv_used_bytes()

    def sample(self, at: float) -> LoadSample:
        """Busy share and mean running sequences between the previous sample and `at`."""
        then, busy_then, seqs_then = self._mark
        busy, seqs = self._busy.until(at), self._sequences.until(at)
        self._mark = (max(then, at), busy, seqs)
        elapsed = at - then
        if elapsed <= 0:
            return LoadSample(0.0, 0.0)
        share = min(1.0, max(0.0, (busy - busy_then) / elapsed))
        return LoadSample(share, max(0.0, (seqs - seqs_then) / elapsed))

    def _queue(self, model: ModelSpec) -> ModelQueue:
        try:
            return self._queues[model.id]
        except KeyError:
            raise ValueError(f"model {model.id!r} is not on this engine") from None


class _Integral:
    """The integral over time of a step function set one step at a time."""

    def __init__(self) -> None:
        self._done = 0.0
        self._step = (0.0, 0.0, 0.0)

    def add(self, start: float, end: float, value: float) -> None:
        self._done = self.until(max(start, self._step[1]))
        self._step = (start, end, value)

    def until(self, at: float) -> float:
        start, end, value = self._step
        return self._done + value * max(0.0, min(at, end) - start)
