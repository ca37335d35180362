"""SimBackend: simulated GPUs that batch, pace and report like real ones."""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import replace

from gpucloud_worker.backend import (
    BackendError,
    Chunk,
    ErrorKind,
    Finish,
    GenerationRequest,
    GpuSample,
    Health,
    WorkerDescription,
)
from gpucloud_worker.sim import memory, roofline
from gpucloud_worker.sim.batch import Batch, Lease
from gpucloud_worker.sim.choice import Choice
from gpucloud_worker.sim.gpus import GpuModel, find_gpu
from gpucloud_worker.sim.models import ModelSpec, find_model
from gpucloud_worker.sim.text import TextStream, count_prompt_tokens, text_seed


class _Pacer:
    """Sleeps along a timeline of simulated durations scaled by 1/speed.

    Deadlines accumulate, so event-loop lateness on one token is caught up on the
    next instead of adding up. Speed 0 means no delay, only a yield to the loop.
    """

    def __init__(self, speed: float) -> None:
        self._scale = 0.0 if speed == 0 else 1.0 / speed
        self._deadline = time.monotonic()

    async def wait(self, simulated_seconds: float) -> None:
        if self._scale == 0.0:
            await asyncio.sleep(0)
            return
        self._deadline += simulated_seconds * self._scale
        await asyncio.sleep(max(0.0, self._deadline - time.monotonic()))


class SimBackend:
    """A worker backend that simulates `gpu_count` GPUs of one catalog kind.

    `gpu` is a catalog key ("a100", "h100", "rtx4090", "a6000"); `models` are catalog
    ids (default: memory.default_models). `speed` divides every delay (10 runs ten
    times faster than real time; 0, like math.inf, runs without delays, for
    benchmarks). `seed` makes requests without their own seed reproducible across a run.
    """

    def __init__(
        self,
        gpu: str = "a100",
        models: Sequence[str] | None = None,
        *,
        speed: float = 1.0,
        seed: int = 0,
        gpu_count: int = 1,
    ) -> None:
        if math.isnan(speed) or speed < 0:
            raise ValueError(f"speed must be >= 0 (0 = no delay), not {speed}")
        if gpu_count < 1:
            raise ValueError(f"gpu_count must be >= 1, not {gpu_count}")
        self.gpu: GpuModel = find_gpu(gpu)
        self.gpu_count = gpu_count
        self.models: tuple[ModelSpec, ...] = self._choose_models(models)
        self.slots = memory.batch_slots(self.models, self.gpu, gpu_count)
        self.speed = speed
        self._rng = random.Random(seed)
        self._batch = Batch()

    def _choose_models(self, names: Sequence[str] | None) -> tuple[ModelSpec, ...]:
        chosen = (
            memory.default_models(self.gpu, self.gpu_count)
            if names is None
            else tuple(dict.fromkeys(find_model(name) for name in names))
        )
        if not memory.fits(chosen, self.gpu, self.gpu_count):
            ids = ", ".join(model.id for model in chosen) or "no model"
            raise ValueError(
                f"{ids} does not fit on {self.gpu_count} x {self.gpu.name}: weights plus "
                f"{memory.MIN_KV_SLOTS} KV slots of {memory.SLOT_CONTEXT_TOKENS} tokens "
                f"each need more than {memory.USABLE_MEMORY_FRACTION:.0%} of GPU memory"
            )
        return chosen

    @property
    def active_sequences(self) -> int:
        """Sequences in the batch now (a request with n choices counts n)."""
        return self._batch.sequences

    async def start(self) -> WorkerDescription:
        """Describes the worker; `speed` is the simulated GPU's own tokens/s at batch 1
        for its first model (not multiplied by the speed factor)."""
        return WorkerDescription(
            backend="sim",
            gpus=(self.gpu.spec(),) * self.gpu_count,
            models=tuple(model.offer() for model in self.models),
            slots=self.slots,
            speed=roofline.tokens_per_second(self.models[0], self.gpu, self.gpu_count),
        )

    async def close(self) -> None:
        """Nothing to release: generations end when their iterators are closed."""

    async def health(self) -> Health:
        load = self._batch.sample()
        occupancy = min(1.0, load.mean_sequences / max(1, self.slots))
        power = self.gpu.power_watts(load.busy, occupancy)
        live_kv = [(model, context) for model, (_, context) in self._batch.loads().items()]
        used = memory.memory_used_bytes(self.models, live_kv) // self.gpu_count
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
        """Prefill, then one token per live choice per decode step, paced by the batch.

        Closing the iterator (aclose, or cancelling the task awaiting it) stops at
        once and leaves the batch; nothing keeps running in the background.
        """
        model = self._served(request.model)
        prompt_tokens = count_prompt_tokens(request.messages)
        limit = _token_limit(request, model, prompt_tokens)
        choices = self._choices(request)
        lease = self._batch.join(model, len(choices), len(choices) * prompt_tokens)
        pacer = _Pacer(self.speed)
        try:
            await pacer.wait(
                roofline.prefill_seconds(model, self.gpu, prompt_tokens, self.gpu_count)
            )
            billed_prompt = False
            for generated in range(limit):
                if generated:
                    await pacer.wait(self._token_interval())
                last = generated == limit - 1
                for chunk in _step(choices, lease, prompt_tokens, last=last):
                    if not billed_prompt:
                        chunk, billed_prompt = replace(chunk, prompt_tokens=prompt_tokens), True
                    yield chunk
                if lease.sequences == 0:
                    break
            yield _finish(choices, prompt_tokens)
        finally:
            lease.release()

    def _token_interval(self) -> float:
        return roofline.token_interval_seconds(self._batch.loads(), self.gpu, self.gpu_count)

    def _served(self, name: str) -> ModelSpec:
        for model in self.models:
            if name == model.id:
                return model
        served = ", ".join(model.id for model in self.models)
        raise BackendError(
            ErrorKind.RETRYABLE,
            f"model {name!r} is not served by this worker (it serves {served})",
        )

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


def _token_limit(request: GenerationRequest, model: ModelSpec, prompt_tokens: int) -> int:
    """Tokens a choice may generate; BackendError when the request cannot run."""
    if request.n < 1 or request.max_tokens < 0:
        raise BackendError(
            ErrorKind.INVALID_REQUEST,
            f"n must be >= 1 and max_tokens >= 0 (got n={request.n}, "
            f"max_tokens={request.max_tokens})",
        )
    if prompt_tokens + max(request.max_tokens, 1) > model.max_context:
        raise BackendError(
            ErrorKind.INVALID_REQUEST,
            _context_message(model.max_context, prompt_tokens, request.max_tokens),
            {"code": "context_length_exceeded", "param": "messages"},
        )
    return request.max_tokens or model.max_context - prompt_tokens


def _context_message(max_context: int, prompt_tokens: int, max_tokens: int) -> str:
    """OpenAI's wording, so clients that parse it keep working."""
    head = f"This model's maximum context length is {max_context} tokens. However, "
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


def _step(choices: list[Choice], lease: Lease, prompt_tokens: int, *, last: bool) -> list[Chunk]:
    """One decode step: a token for each live choice; finished choices leave the batch."""
    chunks: list[Chunk] = []
    for choice in choices:
        if choice.reason is not None:
            continue
        chunk = choice.step()
        if choice.reason is None and last:
            chunk = _merge(chunk, choice.truncate())
        if chunk is not None:
            chunks.append(chunk)
        if choice.reason is None:
            lease.change(0, 1)
        else:
            lease.change(-1, -(prompt_tokens + choice.tokens - 1))
    return chunks


def _merge(first: Chunk | None, second: Chunk | None) -> Chunk | None:
    if first is None or second is None:
        return first or second
    return Chunk(first.index, first.text + second.text, first.tokens + second.tokens)


def _finish(choices: list[Choice], prompt_tokens: int) -> Finish:
    reasons = tuple(choice.reason for choice in choices if choice.reason is not None)
    assert len(reasons) == len(choices), "every choice ends before Finish"
    return Finish(
        reasons=reasons,
        prompt_tokens=prompt_tokens,
        completion_tokens=sum(choice.tokens for choice in choices),
    )
