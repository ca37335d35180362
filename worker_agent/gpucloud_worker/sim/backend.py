"""SimBackend: simulated GPUs on an engine timeline that batch, pace and report like real ones."""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import AsyncGenerator, Sequence
from dataclasses import replace

from gpucloud_sim import memory, roofline
from gpucloud_sim.engine import GpuEngine
from gpucloud_sim.gpus import GpuModel, find_gpu, peak_flops
from gpucloud_sim.live import LiveDriver
from gpucloud_sim.models import ModelSpec, find_model
from gpucloud_sim.sched import Seq
from gpucloud_worker.backend import (
    BackendError,
    Chunk,
    EmbeddingRequest,
    Embeddings,
    ErrorKind,
    Finish,
    GenerationRequest,
    GpuSample,
    GpuSpec,
    Health,
    ModelOffer,
    WorkerDescription,
)
from gpucloud_worker.sim.choice import Choice
from gpucloud_worker.sim.prefix import block_keys
from gpucloud_worker.sim.text import TextStream, count_prompt_tokens, text_seed


class SimBackend:
    """A worker backend that simulates `gpu_count` GPUs of one catalog kind.

    `gpu` is a catalog key ("a100", "h100", "rtx4090", "a6000"); `models` are catalog
    ids (default: memory.default_models). Every generation runs on one GpuEngine
    timeline (continuous batching, chunked prefill, paged KV cache with prefix
    caching) driven in real time: `speed` divides every delay (10 runs ten times
    faster than real time; 0, like math.inf, runs without delays, for benchmarks).
    `seed` makes requests without their own seed reproducible across a run.
    """

    def __init__(
        self,
        gpu: str = "a100",
        models: Sequence[str] | None = None,
        *,
        speed: float = 1.0,
        seed: int = 0,
        gpu_count: int = 1,
        precision: str = "bf16",
    ) -> None:
        if math.isnan(speed) or speed < 0:
            raise ValueError(f"speed must be >= 0 (0 = no delay), not {speed}")
        if gpu_count < 1:
            raise ValueError(f"gpu_count must be >= 1, not {gpu_count}")
        self.gpu: GpuModel = find_gpu(gpu)
        self.gpu_count = gpu_count
        peak_flops(self.gpu, precision)  # ValueError: unknown precision, or no FP8 here
        self.precision = precision
        self.models: tuple[ModelSpec, ...] = self._choose_models(models)
        # What the core may dispatch at once: KV cache for a typical 4k-token request
        # each, capped (memory.batch_slots). The engine itself runs up to
        # EngineConfig.max_num_seqs and queues the rest, as vLLM does.
        self.slots = memory.batch_slots(self.models, self.gpu, gpu_count, precision)
        self.speed = 0.0 if math.isinf(speed) else speed
        self._rng = random.Random(seed)
        self.engine = GpuEngine(self.gpu, self.models, gpu_count=gpu_count, precision=precision)
        self._driver = LiveDriver(self.engine, self.speed)

    def _choose_models(self, names: Sequence[str] | None) -> tuple[ModelSpec, ...]:
        chosen = (
            memory.default_models(self.gpu, self.gpu_count)
            if names is None
            else tuple(dict.fromkeys(find_model(name) for name in names))
        )
        if not memory.fits(chosen, self.gpu, self.gpu_count, self.precision):
            ids = ", ".join(model.id for model in chosen) or "no model"
            raise ValueError(
                f"{ids} does not fit on {self.gpu_count} x {self.gpu.name} in "
                f"{self.precision}: weights plus "
                f"{memory.MIN_KV_SLOTS} KV slots of {memory.SLOT_CONTEXT_TOKENS} tokens "
                f"each need more than {memory.USABLE_MEMORY_FRACTION:.0%} of GPU memory"
            )
        return chosen

    @property
    def active_sequences(self) -> int:
        """Sequences running or waiting on the engine (a request with n choices counts n)."""
        return self.engine.live_sequences

    async def start(self) -> WorkerDescription:
        """Describes the worker; `speed` is the simulated GPU's own tokens/s at batch 1
        for its first model (not multiplied by the speed factor)."""
        return WorkerDescription(
            backend="sim",
            gpus=(_spec(self.gpu),) * self.gpu_count,
            models=tuple(ModelOffer(id=m.id, owned_by=m.owned_by) for m in self.models),
            slots=self.slots,
            speed=roofline.tokens_per_second(
                self.models[0], self.gpu, self.gpu_count, self.precision
            ),
        )

    async def close(self) -> None:
        """Stops the engine's driver; open generations end when their iterators close."""
        await self._driver.close()

    async def embed(self, request: EmbeddingRequest) -> Embeddings:
        """No model of this backend is an embedding model: the core sends it none."""
        raise BackendError(
            ErrorKind.INVALID_REQUEST, f"the model '{request.model}' is not an embedding model"
        )

    async def health(self) -> Health:
        """Utilisation, memory and power of the timeline since the previous sample."""
        load = self.engine.sample(self._driver.clock.now())
        occupancy = min(1.0, load.mean_sequences / max(1, self.slots))
        power = self.gpu.power_watts(load.busy, occupancy)
        used = self.engine.memory_used_bytes() // self.gpu_count
        sample = [
            GpuSample(
                index=index,
                utilization_percent=round(100.0 * load.busy, 1),
                memory_used_bytes=min(used, self.gpu.memory_bytes),
                temperature_celsius=round(self.gpu.temperature_celsius(power), 1),
                power_watts=round(power, 1),
            )
            for index in range(self.gpu_count)
        ]
        return Health(gpus=tuple(sample))

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[Chunk | Finish, None]:
        """One engine sequence per choice; each token the engine gives becomes a Chunk.

        Closing the iterator (aclose, or cancelling the task awaiting it) removes the
        sequences and frees their KV blocks at once.
        """
        self._check_engine()
        model = self._served(request.model)
        prompt_tokens = count_prompt_tokens(request.messages)
        limit = self._token_limit(request, model, prompt_tokens)
        choices = self._choices(request)
        tokens: asyncio.Queue[Seq] = asyncio.Queue()
        keys = block_keys(model.id, request.messages)
        seqs = self.engine.add(
            model, prompt_tokens, limit, keys, count=len(choices), on_token=tokens.put_nowait
        )
        self._driver.wake()
        try:
            billed_prompt = False
            while any(choice.reason is None for choice in choices):
                seq = await tokens.get()
                self._check_engine()
                chunk = _advance(choices[seq.index], limit)
                if choices[seq.index].reason is not None:
                    self.engine.abort(model, [seq])  # a stop sequence ends it early
                if chunk is None:
                    continue
                if not billed_prompt:
                    chunk, billed_prompt = replace(chunk, prompt_tokens=prompt_tokens), True
                yield chunk
            yield _finish(choices, prompt_tokens, seqs[0].cached_tokens)
        finally:
            self.engine.abort(model, seqs)
            self._driver.settle()

    def cached_prompt_tokens(self, request: GenerationRequest) -> int:
        """Prompt tokens of `request` this worker holds in its prefix cache now (0 for a
        model it does not serve): the figure a prefix-aware scheduler would ask for."""
        for model in self.models:
            if model.id == request.model:
                keys = block_keys(model.id, request.messages)
                return self.engine.cached_prefix_tokens(model, keys)
        return 0

    def _check_engine(self) -> None:
        if self._driver.error is not None:
            raise BackendError(ErrorKind.INTERNAL, "the simulated engine failed")

    def _served(self, name: str) -> ModelSpec:
        for model in self.models:
            if name == model.id:
                return model
        served = ", ".join(model.id for model in self.models)
        raise BackendError(
            ErrorKind.RETRYABLE,
            f"model {name!r} is not served by this worker (it serves {served})",
        )

    def _token_limit(self, request: GenerationRequest, model: ModelSpec, prompt_tokens: int) -> int:
        """Tokens a choice may generate; BackendError when the request cannot run.

        The context is the model's, or less where this worker's KV cache cannot hold
        a sequence that long (vLLM caps max_model_len the same way).
        """
        if request.n < 1 or request.max_tokens < 0:
            raise BackendError(
                ErrorKind.INVALID_REQUEST,
                f"n must be >= 1 and max_tokens >= 0 (got n={request.n}, "
                f"max_tokens={request.max_tokens})",
            )
        context = self.engine.context_limit(model)
        wanted = prompt_tokens + max(request.max_tokens, 1)
        if wanted > context:
            head = f"This model's maximum context length is {model.max_context} tokens"
            if wanted <= model.max_context:
                head += f", and this worker's KV cache holds {context} tokens per sequence"
            raise BackendError(
                ErrorKind.INVALID_REQUEST,
                _context_message(head, prompt_tokens, request.max_tokens),
                {"code": "context_length_exceeded", "param": "messages"},
            )
        return request.max_tokens or context - prompt_tokens

    def _choices(self, request: GenerationRequest) -> list[Choice]:
        """One seeded text stream per choice: the same seed and prompt give the same text."""
        if request.seed is not None:
            base = request.seed
        elif request.temperature == 0:
            base = 0
        else:
            base = self._rng.getrandbits(64)
        prompt = "\x1e".join(f"{message.role}:{message.content}" for message in request.messages)
        natural = request.max_tokens == 0
        return [
            Choice(
                index,
                TextStream(text_seed(base, request.model, prompt, index)),
                request.stop,
                natural,
            )
            for index in range(request.n)
        ]


def _context_message(head: str, prompt_tokens: int, max_tokens: int) -> str:
    """OpenAI's wording, so clients that parse it keep working."""
    head += ". However, "
    if max_tokens == 0:
        return (
            f"{head}your messages resulted in {prompt_tokens} tokens. "
            "Please reduce the length of the messages."
        )
    return (
        f"{head}you requested {prompt_tokens + max_tokens} tokens ({prompt_tokens} in the "
        f"messages, {max_tokens} in the completion). Please reduce the length of the "
        "messages or completion."
    )


def _advance(choice: Choice, limit: int) -> Chunk | None:
    """The choice's next token; at the token limit it ends with "length"."""
    if choice.reason is not None:
        return None
    chunk = choice.step()
    if choice.reason is None and choice.tokens >= limit:
        chunk = _merge(chunk, choice.truncate())
    return chunk


def _merge(first: Chunk | None, second: Chunk | None) -> Chunk | None:
    if first is None or second is None:
        return first or second
    return Chunk(first.index, first.text + second.text, first.tokens + second.tokens)


def _finish(choices: list[Choice], prompt_tokens: int, cached_tokens: int) -> Finish:
    reasons = tuple(choice.reason for choice in choices if choice.reason is not None)
    assert len(reasons) == len(choices), "every choice ends before Finish"
    return Finish(
        reasons=reasons,
        prompt_tokens=prompt_tokens,
        completion_tokens=sum(choice.tokens for choice in choices),
        cached_tokens=cached_tokens,
    )


def _spec(gpu: GpuModel) -> GpuSpec:
    """A catalog GPU as the core's registry describes GPUs."""
    return GpuSpec(
        name=gpu.name,
        memory_total_bytes=gpu.memory_bytes,
        memory_bandwidth_gbps=gpu.bandwidth_bytes_per_s / 1e9,
        bf16_tflops=gpu.dense_bf16_flops / 1e12,
    )
