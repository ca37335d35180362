"""One model's continuous batching: which sequences decode, which prefill chunk runs, preemption."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from enum import Enum

from gpucloud_sim.cost import StepWork
from gpucloud_sim.gpus import GIB, GpuModel
from gpucloud_sim.kv import BLOCK_TOKENS, BlockPool, blocks_for
from gpucloud_sim.memory import USABLE_MEMORY_FRACTION

# vLLM V1's defaults for the OpenAI server (EngineArgs.get_batch_defaults): GPUs of 70
# GiB or more other than the A100 get a step budget of 8192 tokens and 1024 running
# sequences; the others (the A100 too: a larger budget lowered its throughput, vLLM
# PR #17885) 2048 and 256.
LARGE_GPU_BYTES = 70 * GIB
LARGE_GPU_BATCH = (8192, 1024)
OTHER_GPU_BATCH = (2048, 256)


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """The serving engine's knobs, with vLLM's defaults (`for_gpu` picks them per GPU)."""

    # max_num_batched_tokens: the token budget of one step, shared by the decodes and
    # the chunk of prefill it carries.
    max_num_batched_tokens: int = OTHER_GPU_BATCH[0]
    # max_num_seqs: sequences running at once.
    max_num_seqs: int = OTHER_GPU_BATCH[1]
    # gpu_memory_utilization: the share of device memory for weights, KV cache and
    # activations; the rest is left to the CUDA context and other processes.
    gpu_memory_utilization: float = USABLE_MEMORY_FRACTION
    prefix_caching: bool = True

    @classmethod
    def for_gpu(cls, gpu: GpuModel) -> EngineConfig:
        large = gpu.memory_bytes >= LARGE_GPU_BYTES and gpu.key != "a100"
        tokens, seqs = LARGE_GPU_BATCH if large else OTHER_GPU_BATCH
        return cls(max_num_batched_tokens=tokens, max_num_seqs=seqs)


class State(Enum):
    WAITING = "waiting"
    RUNNING = "running"
    DONE = "done"


@dataclass(eq=False, slots=True)
class Seq:
    """One sequence on the timeline: its prompt, progress, KV blocks and token times."""

    prompt_tokens: int
    max_tokens: int
    # Content keys of the prompt's full blocks, for the prefix cache.
    keys: tuple[Hashable, ...]
    arrival_s: float
    index: int = 0
    on_token: Callable[[Seq], None] | None = None
    state: State = State.WAITING
    # Tokens whose KV is in the cache; prompt plus generated tokens are `known`.
    computed: int = 0
    generated: int = 0
    blocks: list[int] = field(default_factory=list)
    cached_tokens: int = 0
    started: bool = False
    registered: int = 0
    preemptions: int = 0
    first_token_s: float | None = None
    last_token_s: float = 0.0

    @property
    def pending(self) -> int:
        """Tokens to compute before the next token can be sampled."""
        return self.prompt_tokens + self.generated - self.computed


Plan = list[tuple[Seq, int]]


class ModelQueue:
    """The running and waiting sequences of one model and its KV block pool.

    Each step first gives every running sequence its next token or prefill chunk
    (preempting from the tail by recompute when blocks run out), then admits waiting
    sequences, first come first served, while the token budget and the blocks last.
    """

    def __init__(self, blocks: int, config: EngineConfig) -> None:
        self.config = config
        self.pool = BlockPool(blocks, caching=config.prefix_caching)
        self.running: list[Seq] = []
        self.waiting: deque[Seq] = deque()
        self.preemptions = 0

    @property
    def live(self) -> int:
        return len(self.running) + len(self.waiting)

    def schedule(self) -> tuple[Plan, StepWork]:
        """The sequences of the next step and the tokens each computes."""
        plan: Plan = []
        work = StepWork()
        budget = self.config.max_num_batched_tokens
        index = 0
        while index < len(self.running) and budget > 0:
            seq = self.running[index]
            tokens = min(seq.pending, budget)
            held = len(seq.blocks) * BLOCK_TOKENS  # most steps need no new block
            if seq.computed + tokens > held and not self._grow(seq, seq.computed + tokens):
                return plan, work  # no admissions in a step that preempts
            self._plan(plan, work, seq, tokens)
            budget -= tokens
            index += 1
        self._admit(plan, work, budget)
        return plan, work

    def commit(self, plan: Plan, end_s: float) -> tuple[list[Seq], list[Seq]]:
        """Applies a step that ended at `end_s`: (sequences given a token, finished)."""
        emitted: list[Seq] = []
        finished: list[Seq] = []
        for seq, tokens in plan:
            seq.computed += tokens
            seq.started = True
            if seq.pending > 0:
                continue
            seq.generated += 1
            if seq.first_token_s is None:
                seq.first_token_s = end_s
            seq.last_token_s = end_s
            emitted.append(seq)
            if seq.generated >= seq.max_tokens:
                self.remove(seq)
                finished.append(seq)
        return emitted, finished

    def remove(self, seq: Seq) -> None:
        """Ends a sequence (finished or aborted) and frees its blocks at once."""
        if seq.state is State.RUNNING:
            self.running.remove(seq)
        elif seq.state is State.WAITING:
            self.waiting.remove(seq)
        seq.state = State.DONE
        self.pool.release(seq.blocks)
        seq.blocks = []

    def _grow(self, seq: Seq, tokens: int) -> bool:
        """Blocks for `tokens` tokens of `seq`, preempting the newest sequences for them."""
        need = blocks_for(tokens) - len(seq.blocks)
        while need > self.pool.available:
            victim = self.running[-1]
            self._preempt(victim)
            if victim is seq:
                return False
        if need > 0:
            seq.blocks += self.pool.allocate(need) or []
        return True

    def _preempt(self, seq: Seq) -> None:
        """Recompute preemption: drop the KV cache, back to the head of the queue."""
        self.running.remove(seq)
        self.pool.release(seq.blocks)
        seq.blocks, seq.computed, seq.registered = [], 0, 0
        seq.state = State.WAITING
        seq.preemptions += 1
        self.preemptions += 1
        self.waiting.appendleft(seq)

    def _admit(self, plan: Plan, work: StepWork, budget: int) -> None:
        while self.waiting and budget > 0 and len(self.running) < self.config.max_num_seqs:
            seq = self.waiting[0]
            self._match_prefix(seq)
            tokens = min(seq.pending, budget)
            more = self.pool.allocate(blocks_for(seq.computed + tokens) - len(seq.blocks))
            if more is None:
                self.pool.release(seq.blocks)
                seq.blocks, seq.computed = [], 0
                return
            seq.blocks += more
            self.waiting.popleft()
            seq.state = State.RUNNING
            self.running.append(seq)
            self._plan(plan, work, seq, tokens)
            budget -= tokens

    def _match_prefix(self, seq: Seq) -> None:
        """Reuses cached blocks of the prompt; the last token is always computed."""
        usable = (seq.prompt_tokens + seq.generated - 1) // BLOCK_TOKENS
        hits = self.pool.match(seq.keys[:usable])
        seq.blocks = hits
        seq.computed, seq.registered = len(hits) * BLOCK_TOKENS, len(hits)
        if not seq.started:
            seq.cached_tokens = seq.computed

    def _plan(self, plan: Plan, work: StepWork, seq: Seq, tokens: int) -> None:
        plan.append((seq, tokens))
        if seq.generated > 0 and tokens == 1 and seq.pending == 1:
            work.add_decode(seq.computed)
            return
        work.add_prefill(tokens, seq.computed, first=not seq.started)
        # Full prompt blocks this step fills are cached as it is scheduled, as vLLM V1
        # does: a request admitted later in the same step (a sibling choice, the same
        # system prompt) reuses them, its attention reading the KV this step writes.
        full = min(len(seq.keys), (seq.computed + tokens) // BLOCK_TOKENS)
        for block in range(seq.registered, full):
            self.pool.register(seq.blocks[block], seq.keys[block])
        seq.registered = max(seq.registered, full)
