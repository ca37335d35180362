"""SimBackend: simulated GPUs on an engine timeline that batch, pace and report like real ones."""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import replace

from gpucloud_sim import memory, roofline
from gpucloud_sim.engine import GpuEngine
from gpucloud_sim.gpus import GpuModel, find_gpu, peak_flops
from gpucloud_sim.live import LiveDriver
from gpucloud_sim.models import CATALOG, ModelSpec, find_model
from gpucloud_sim.sched import Seq
from gpucloud_worker.backend import (
    BackendError,
    Capabilities,
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
from gpucloud_worker.sim import embeddings
from gpucloud_worker.sim.choice import Choice
from gpucloud_worker.sim.generation import first_prompt_keys, plan


class SimBackend:
    """A worker backend that simulates `gpu_count` GPUs of one catalog kind.

    `gpu` is a catalog key ("a100", "h100", "rtx4090", "a6000"); `models` are catalog
    ids (default: memory.default_models). Every generation runs on one GpuEngine
    timeline (continuous batching, chunked prefill, paged KV cache with prefix
    caching) driven in real time: `speed` divides every delay (10 runs ten times
    faster than real time; 0, like math.inf, runs without delays, for benchmarks).
    `seed` makes requests without their own seed reproducible across a run.

    What a generation says is generation.plan's: text, tool calls and JSON answers
    that validate against their schemas, logprobs, text completions. Presence and
    frequency penalties weigh repeated words down (text.TextStream); logit_bias is
    accepted and ignored, its ids being a real tokenizer's, which the sim has not.
    Embedding models embed (`embed`) as prefill-only sequences on the same timeline.
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
            else tuple(dict.fromkeys(find_model(name, CATALOG) for name in names))
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
            models=tuple(
                ModelOffer(id=m.id, owned_by=m.owned_by, capabilities=self.capabilities(m))
                for m in self.models
            ),
            slots=self.slots,
            speed=roofline.tokens_per_second(
                self.models[0], self.gpu, self.gpu_count, self.precision
            ),
        )

    def capabilities(self, model: ModelSpec) -> Capabilities:
        """What the sim honours for `model`: everything of the OpenAI surface but media
        input for a generation model; vectors of its own length (shorter ones too for a
        Matryoshka model) for an embedding model. The context is the model's, or what
        this worker's KV cache holds if less, as vLLM caps max_model_len."""
        context = self.engine.context_limit(model)
        if model.embeds:
            return Capabilities(
                embeddings=True,
                embedding_dimensions=model.embedding_dimensions,
                variable_dimensions=model.matryoshka,
                max_context_tokens=context,
            )
        return Capabilities(
            tools=True,
            json_schema=True,
            logprobs=True,
            completions=True,
            max_context_tokens=context,
        )

    async def close(self) -> None:
        """Stops the engine's driver; open generations end when their iterators close."""
        await self._driver.close()

    async def embed(self, request: EmbeddingRequest) -> Embeddings:
        """One prefill-only sequence per input on the engine timeline; the vectors once
        every input's forward pass is done (embeddings.vector)."""
        self._check_engine()
        model = self._served(request.model)
        if not model.embeds:
            raise _wrong_kind(model, "is not an embedding model")
        size = model.embedding_dimensions
        dimensions = size if request.dimensions is None else request.dimensions
        if dimensions != size and not (model.matryoshka and 0 < dimensions < size):
            raise BackendError(
                ErrorKind.INVALID_REQUEST,
                f"{model.id} gives vectors of {size} dimensions, not {dimensions}",
                {"param": "dimensions"},
            )
        counts = [embeddings.input_tokens(item) for item in request.inputs]
        limit = self.engine.context_limit(model)
        if max(counts, default=0) > limit:
            raise BackendError(
                ErrorKind.INVALID_REQUEST,
                f"This model's maximum context length is {limit} tokens. However, an input "
                f"has {max(counts)} tokens. Please reduce the length of the input.",
                {"code": "context_length_exceeded", "param": "input"},
            )
        await self._forward(model, counts)
        vectors = tuple(embeddings.vector(model.id, i, size, dimensions) for i in request.inputs)
        return Embeddings(vectors, sum(counts))

    async def _forward(self, model: ModelSpec, counts: Sequence[int]) -> None:
        """Runs a forward pass of `counts` tokens each (an empty input still has its
        special tokens: one) and waits until all are done."""
        if not counts:
            return
        done: set[int] = set()
        finished = asyncio.Event()

        def on_token(seq: Seq) -> None:
            done.add(id(seq))
            if len(done) == len(seqs):
                finished.set()

        seqs = [self.engine.add(model, max(1, n), 0, on_token=on_token)[0] for n in counts]
        self._driver.wake()
        try:
            await finished.wait()
            self._check_engine()
        finally:
            self.engine.abort(model, seqs)
            self._driver.settle()

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
        if model.embeds:
            raise _wrong_kind(model, "is an embedding model: it embeds, it does not generate")
        _check_sampling(request)
        runs = plan(request, model.id, self._base_seed(request))
        limit = self._token_limit(request, model, max(run.tokens for run in runs))
        choices = [choice for run in runs for choice in run.choices]
        tokens: asyncio.Queue[int] = asyncio.Queue()
        seqs: list[Seq] = []
        for run in runs:
            notify = _notify(tokens, run.choices[0].index)
            count = len(run.choices)
            seqs += self.engine.add(
                model, max(1, run.tokens), limit, run.keys, count=count, on_token=notify
            )
        self._driver.wake()
        prompt_tokens = sum(run.tokens for run in runs)
        try:
            billed_prompt = False
            while any(choice.reason is None for choice in choices):
                index = await tokens.get()
                self._check_engine()
                chunk = _advance(choices[index], limit)
                if choices[index].reason is not None:
                    self.engine.abort(model, [seqs[index]])  # it ended before max_tokens
                if chunk is None:
                    continue
                if not billed_prompt:
                    chunk, billed_prompt = replace(chunk, prompt_tokens=prompt_tokens), True
                yield chunk
            cached = sum(seqs[run.choices[0].index].cached_tokens for run in runs)
            yield _finish(choices, prompt_tokens, cached)
        finally:
            self.engine.abort(model, seqs)
            self._driver.settle()

    def cached_prompt_tokens(self, request: GenerationRequest) -> int:
        """Prompt tokens of `request` this worker holds in its prefix cache now (0 for a
        model it does not serve): the figure a prefix-aware scheduler would ask for."""
        for model in self.models:
            if model.id == request.model and not model.embeds:
                keys = first_prompt_keys(request, model.id)
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
        context = self.engine.context_limit(model)
        wanted = prompt_tokens + max(request.max_tokens, 1)
        if wanted > context:
            head = f"This model's maximum context length is {model.max_context} tokens"
            if wanted <= model.max_context:
                head += f", and this worker's KV cache holds {context} tokens per sequence"
            where = "messages" if request.completion is None else "prompt"
            raise BackendError(
                ErrorKind.INVALID_REQUEST,
                _context_message(head, where, prompt_tokens, request.max_tokens),
                {"code": "context_length_exceeded", "param": where},
            )
        return request.max_tokens or context - prompt_tokens

    def _base_seed(self, request: GenerationRequest) -> int:
        """The request's seed; greedy decoding's (temperature 0) is fixed; else drawn
        from the backend's seed, so a run replays."""
        if request.seed is not None:
            return request.seed
        if request.temperature == 0:
            return 0
        return self._rng.getrandbits(64)


def _check_sampling(request: GenerationRequest) -> None:
    if request.n < 1 or request.max_tokens < 0:
        raise BackendError(
            ErrorKind.INVALID_REQUEST,
            f"n must be >= 1 and max_tokens >= 0 (got n={request.n}, "
            f"max_tokens={request.max_tokens})",
        )


def _notify(tokens: asyncio.Queue[int], first: int) -> Callable[[Seq], None]:
    """The engine's on_token for one prompt's sequences: choice `first` + seq.index."""
    return lambda seq: tokens.put_nowait(first + seq.index)


def _wrong_kind(model: ModelSpec, what: str) -> BackendError:
    return BackendError(ErrorKind.INVALID_REQUEST, f"{model.id} {what}", {"param": "model"})


def _context_message(head: str, where: str, prompt_tokens: int, max_tokens: int) -> str:
    """OpenAI's wording, so clients that parse it keep working."""
    head += ". However, "
    if max_tokens == 0:
        return (
            f"{head}your {where} resulted in {prompt_tokens} tokens. "
            f"Please reduce the length of the {where}."
        )
    return (
        f"{head}you requested {prompt_tokens + max_tokens} tokens ({prompt_tokens} in the "
        f"{where}, {max_tokens} in the completion). Please reduce the length of the "
        f"{where} or completion."
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
    return Chunk(
        first.index,
        first.text + second.text,
        first.tokens + second.tokens,
        tool_calls=first.tool_calls + second.tool_calls,
        logprobs=first.logprobs + second.logprobs,
    )


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
