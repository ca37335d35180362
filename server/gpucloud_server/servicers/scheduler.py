"""SchedulerService: a thin adapter between gRPC and the Scheduler."""

from __future__ import annotations

import asyncio
import hmac
import math
from collections.abc import AsyncIterator, Awaitable, Callable, MutableSequence
from typing import TypeAlias, TypeVar, cast

import grpc

from gpucloud.v1 import chat_pb2, scheduler_pb2, scheduler_pb2_grpc, worker_pb2
from gpucloud_server.errors import GpucloudError, InvalidArgument, Unauthenticated
from gpucloud_server.principal import KeyAuthority, KeyPrincipal, LimitDecision, RateLimiter
from gpucloud_server.scheduling import capabilities
from gpucloud_server.scheduling.capabilities import Needs
from gpucloud_server.scheduling.outbox import Assign, WorkerMessage
from gpucloud_server.scheduling.prefix import block_hashes
from gpucloud_server.scheduling.registry import Gpu, GpuReading, Worker, WorkerInfo
from gpucloud_server.scheduling.scheduler import Scheduler
from gpucloud_server.scheduling.tasks import (
    Delta,
    Event,
    Failed,
    FailureKind,
    Finished,
    Queued,
    Started,
    Task,
    TaskRef,
    TaskSpec,
)
from gpucloud_server.servicers import admission, validation
from gpucloud_server.servicers.metadata import REQUEST_ID, AnyContext, bearer_token, request_id

REGISTER_TIMEOUT_S = 10.0
# A queued caller hears a new position when the queue changes, but at most this often:
# in a deep, busy queue every task that leaves moves every caller behind it.
POSITION_MIN_INTERVAL_S = 0.5
FAILURE_KINDS = {
    worker_pb2.TASK_ERROR_KIND_INVALID_REQUEST: FailureKind.INVALID_REQUEST,
    worker_pb2.TASK_ERROR_KIND_RETRYABLE: FailureKind.RETRYABLE,
    worker_pb2.TASK_ERROR_KIND_CANCELLED: FailureKind.CANCELLED,
    worker_pb2.TASK_ERROR_KIND_INTERNAL: FailureKind.INTERNAL,
}  # anything else (an unset kind, one newer than this core) counts as INTERNAL

ChatContext: TypeAlias = grpc.aio.ServicerContext[
    scheduler_pb2.CreateChatCompletionRequest, scheduler_pb2.CreateChatCompletionResponse
]
CompletionContext: TypeAlias = grpc.aio.ServicerContext[
    scheduler_pb2.CreateCompletionRequest, scheduler_pb2.CreateCompletionResponse
]
EmbeddingContext: TypeAlias = grpc.aio.ServicerContext[
    scheduler_pb2.CreateEmbeddingRequest, scheduler_pb2.CreateEmbeddingResponse
]
# What a task's payload is: the request it runs.
Generation: TypeAlias = (
    scheduler_pb2.CreateChatCompletionRequest
    | scheduler_pb2.CreateCompletionRequest
    | scheduler_pb2.CreateEmbeddingRequest
)
R = TypeVar("R", scheduler_pb2.CreateChatCompletionResponse, scheduler_pb2.CreateCompletionResponse)
ModelsContext: TypeAlias = grpc.aio.ServicerContext[
    scheduler_pb2.ListModelsRequest, scheduler_pb2.ListModelsResponse
]
SessionContext: TypeAlias = grpc.aio.ServicerContext[
    scheduler_pb2.WorkerSessionRequest, scheduler_pb2.WorkerSessionResponse
]


class SchedulerServicer(scheduler_pb2_grpc.SchedulerServiceServicer):
    def __init__(
        self,
        scheduler: Scheduler,
        keys: KeyAuthority,
        limiter: RateLimiter,
        join_token: str,
        heartbeat_interval_s: float,
    ) -> None:
        self._scheduler = scheduler
        self._keys = keys
        self._limiter = limiter
        self._join_token = join_token.encode()
        self._heartbeat_interval_s = heartbeat_interval_s

    async def CreateChatCompletion(
        self,
        request: scheduler_pb2.CreateChatCompletionRequest,
        context: ChatContext,
    ) -> AsyncIterator[scheduler_pb2.CreateChatCompletionResponse]:
        async def admit(key: KeyPrincipal) -> None:
            validation.check_chat_request(request)
            key.check_model(request.model)
            self._check_capabilities(request.model, admission.chat_needs(request))

        prefix = block_hashes(request.model, ((m.role, m.content) for m in request.messages))
        async for event in self._generate(
            request, context, admit, prefix, scheduler_pb2.CreateChatCompletionResponse
        ):
            yield event

    async def CreateCompletion(
        self,
        request: scheduler_pb2.CreateCompletionRequest,
        context: CompletionContext,
    ) -> AsyncIterator[scheduler_pb2.CreateCompletionResponse]:
        async def admit(key: KeyPrincipal) -> None:
            validation.check_completion_request(request)
            key.check_model(request.model)
            self._check_capabilities(request.model, admission.completion_needs(request))

        prefix = block_hashes(request.model, (("prompt", p) for p in request.prompt.prompts[:1]))
        async for event in self._generate(
            request, context, admit, prefix, scheduler_pb2.CreateCompletionResponse
        ):
            yield event

    async def CreateEmbedding(
        self,
        request: scheduler_pb2.CreateEmbeddingRequest,
        context: EmbeddingContext,
    ) -> scheduler_pb2.CreateEmbeddingResponse:
        async def admit(key: KeyPrincipal) -> None:
            validation.check_embedding_request(request)
            key.check_model(request.model)
            self._check_capabilities(request.model, admission.embedding_needs(request))

        task, decision = await self._admit(request, context, admit, ())
        try:
            started, _, finished = await _wait_for_end(task)
        except GpucloudError as error:
            _repeat_limits(error, decision)
            raise
        finally:
            self._scheduler.cancel(task)
        return scheduler_pb2.CreateEmbeddingResponse(
            started=_started(started),
            data=cast(list[chat_pb2.Embedding], finished.embeddings),
            usage=_usage(finished),
        )

    def _check_capabilities(self, model: str, needs: Needs) -> None:
        capabilities.check(model, needs, self._scheduler.registry.offers(model))

    async def _admit(
        self,
        request: Generation,
        context: AnyContext,
        admit: Callable[[KeyPrincipal], Awaitable[None]],
        prefix: tuple[int, ...],
    ) -> tuple[Task, LimitDecision]:
        """Authenticates, checks `request` (`admit`), counts it against the key's limits
        and queues it; a refusal before the count still tells the limits."""
        rid = request_id(context)
        secret = bearer_token(context)
        if secret is None:
            raise Unauthenticated("missing API key: send 'authorization: Bearer <key>'")
        key = await self._keys.authenticate(secret)
        try:
            await admit(key)
        except GpucloudError as error:
            limits = await self._limiter.peek(key)
            await self._send_headers(context, rid, key, limits)
            _repeat_limits(error, limits)
            raise
        decision = await self._limiter.admit(key)
        await self._send_headers(context, rid, key, decision)
        priority = (
            min(key.priority, request.priority) if request.HasField("priority") else key.priority
        )
        spec = TaskSpec(request.model, priority, key, rid, request, prefix)
        try:
            return self._scheduler.submit(spec), decision
        except GpucloudError as error:
            _repeat_limits(error, decision)
            raise

    async def _generate(
        self,
        request: scheduler_pb2.CreateChatCompletionRequest | scheduler_pb2.CreateCompletionRequest,
        context: AnyContext,
        admit: Callable[[KeyPrincipal], Awaitable[None]],
        prefix: tuple[int, ...],
        response: type[R],
    ) -> AsyncIterator[R]:
        """A chat or text completion's events, as `response` messages."""
        task, decision = await self._admit(request, context, admit, prefix)
        try:
            try:
                if request.collect:
                    yield response(completed=await _collect(task))
                    return
                async for event in self._follow(task):
                    yield _response(response, event)
            finally:
                self._scheduler.cancel(task)
        except GpucloudError as error:
            _repeat_limits(error, decision)
            raise

    @staticmethod
    async def _send_headers(
        context: AnyContext, rid: str, key: KeyPrincipal, limits: LimitDecision
    ) -> None:
        await context.send_initial_metadata(
            ((REQUEST_ID, rid), ("x-key-id", key.key_id), *limits.headers().items())
        )

    async def _follow(self, task: Task) -> AsyncIterator[Started | Delta | Finished | Queued]:
        loop = asyncio.get_running_loop()
        announced: int | None = None  # the position the caller last heard
        quiet_until = -math.inf  # no new position before then
        held: Event | None = None
        while True:
            if held is not None:
                event, held = held, None
            elif not task.events.empty():
                event = task.events.get_nowait()
            elif task.started_at is None:
                seen = self._scheduler.queue_version.value
                position = self._scheduler.position(task)
                if position is not None and position.position != announced:
                    announced = position.position
                    quiet_until = loop.time() + POSITION_MIN_INTERVAL_S
                    yield position
                next_event = await self._event_or_queue_change(task, seen, quiet_until)
                if next_event is None:
                    continue
                event = next_event
            else:
                event = await task.events.get()
            if isinstance(event, Failed):
                raise event.error
            if isinstance(event, Delta):
                event, held = _coalesce(event, task)
            yield event
            if isinstance(event, Finished):
                return

    async def _event_or_queue_change(
        self, task: Task, seen: int, quiet_until: float
    ) -> Event | None:
        """The task's next event, or None once the queue has changed since version `seen`
        (the caller's position may have moved) and the loop's clock is past `quiet_until`."""
        event = asyncio.ensure_future(task.events.get())
        moved: asyncio.Future[None] | None = None
        try:
            quiet_s = quiet_until - asyncio.get_running_loop().time()
            if quiet_s > 0:
                await asyncio.wait((event,), timeout=quiet_s)
            if not event.done():
                moved = asyncio.ensure_future(self._scheduler.queue_version.wait(seen))
                await asyncio.wait((event, moved), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if moved is not None:
                moved.cancel()
            event.cancel()  # a channel's get() leaves its item queued when cancelled
        return event.result() if event.done() and not event.cancelled() else None

    async def ListModels(
        self, request: scheduler_pb2.ListModelsRequest, context: ModelsContext
    ) -> scheduler_pb2.ListModelsResponse:
        secret = bearer_token(context)
        if secret is None:
            raise Unauthenticated("missing API key: send 'authorization: Bearer <key>'")
        key = await self._keys.authenticate(secret)
        await self._send_headers(context, request_id(context), key, await self._limiter.peek(key))
        registry = self._scheduler.registry
        entries = []
        for model, workers in sorted(registry.served_models().items()):
            if key.allowed_models and model not in key.allowed_models:
                continue
            created, owned_by = registry.model_first_seen[model]
            entries.append(
                scheduler_pb2.ModelEntry(
                    id=model,
                    owned_by=owned_by,
                    created=int(created),
                    workers=workers,
                    capabilities=admission.to_proto(admission.union(registry.offers(model))),
                )
            )
        return scheduler_pb2.ListModelsResponse(models=entries)

    async def WorkerSession(
        self,
        request_iterator: AsyncIterator[scheduler_pb2.WorkerSessionRequest],
        context: SessionContext,
    ) -> AsyncIterator[scheduler_pb2.WorkerSessionResponse]:
        worker = await self._register(request_iterator)
        reader = asyncio.create_task(self._read(worker, request_iterator))
        try:
            yield scheduler_pb2.WorkerSessionResponse(
                registered=worker_pb2.WorkerRegistered(
                    worker_id=worker.id,
                    heartbeat_interval_seconds=max(1, math.ceil(self._heartbeat_interval_s)),
                    heartbeat_interval_ms=max(1, round(self._heartbeat_interval_s * 1000)),
                )
            )
            while (message := await worker.outbox.get()) is not None:
                yield _to_worker(message)
        finally:
            reader.cancel()
            self._scheduler.disconnect(worker)

    async def _register(
        self, requests: AsyncIterator[scheduler_pb2.WorkerSessionRequest]
    ) -> Worker:
        try:
            first = await asyncio.wait_for(anext(requests), REGISTER_TIMEOUT_S)
        except (TimeoutError, StopAsyncIteration) as exc:
            raise InvalidArgument("a worker session must open with RegisterWorker") from exc
        if first.WhichOneof("payload") != "register":
            raise InvalidArgument("a worker session must open with RegisterWorker")
        reg = first.register
        if not hmac.compare_digest(reg.join_token.encode(), self._join_token):
            raise Unauthenticated("unknown join token")
        if not reg.worker_id or len(reg.worker_id) > 128 or not reg.slots or not reg.models:
            raise InvalidArgument("RegisterWorker needs a worker_id, slots and models")
        return self._scheduler.connect(_worker_info(reg))

    async def _read(
        self, worker: Worker, requests: AsyncIterator[scheduler_pb2.WorkerSessionRequest]
    ) -> None:
        try:
            async for message in requests:
                self._handle(worker, message)
        finally:
            # The stream broke or the worker closed it: end the writer too.
            worker.outbox.put_nowait(None)

    def _handle(self, worker: Worker, message: scheduler_pb2.WorkerSessionRequest) -> None:
        kind = message.WhichOneof("payload")
        s = self._scheduler
        if kind == "chunk":
            c = message.chunk
            delta = (
                Delta(c.index, c.text, tuple(c.tool_calls), tuple(c.logprobs))
                if c.tool_calls or c.logprobs
                else Delta(c.index, c.text)  # the hot path: plain text
            )
            ref = TaskRef(c.task_id, c.attempt)
            s.chunk(worker, ref, delta, tokens=c.tokens, prompt_tokens=c.prompt_tokens)
        elif kind == "heartbeat":
            hb = message.heartbeat
            s.heartbeat(worker, tuple(_reading(g) for g in hb.gpus), hb.healthy, hb.status_message)
        elif kind == "done":
            d = message.done
            s.done(
                worker,
                TaskRef(d.task_id, d.attempt),
                tuple((c.index, int(c.reason)) for c in d.choices),
                prompt_tokens=d.usage.prompt_tokens,
                completion_tokens=d.usage.completion_tokens,
                cached_tokens=d.usage.prompt_tokens_details.cached_tokens,
                embeddings=tuple(d.embeddings),
            )
        elif kind == "failed":
            f = message.failed
            s.failed(
                worker,
                TaskRef(f.task_id, f.attempt),
                FAILURE_KINDS.get(f.kind, FailureKind.INTERNAL),
                f.message,
                code=f.code[:64],
                param=f.param[:64],
            )
        elif kind == "drain":
            s.drain(worker)


def _repeat_limits(error: GpucloudError, limits: LimitDecision) -> None:
    """Adds the limits already sent as initial metadata to `error`'s trailing metadata:
    grpc.aio clients lose initial metadata that arrives together with a failed status
    (their call reports it empty), so a refusal must repeat what it told."""
    error.headers = {**limits.headers(), **error.headers}


async def _wait_for_end(task: Task) -> tuple[Started, list[Delta], Finished]:
    """Waits for the end of `task`: how it started, its output, and how it ended."""
    started: Started | None = None
    deltas: list[Delta] = []
    while True:
        event = await task.events.get()
        if isinstance(event, Failed):
            raise event.error
        if isinstance(event, Started):
            started = event
        elif isinstance(event, Delta):
            deltas.append(event)
        elif isinstance(event, Finished):
            assert started is not None, "a task finishes only after it started"
            return started, deltas, event


async def _collect(task: Task) -> scheduler_pb2.CompletedChatCompletion:
    """Waits for the end of `task`: all of it in one message, each choice's output joined
    and its tool calls whole."""
    started, deltas, finished = await _wait_for_end(task)
    choices: dict[int, scheduler_pb2.ContentDelta] = {}
    texts: dict[int, list[str]] = {}
    for delta in deltas:
        choice = choices.setdefault(delta.index, scheduler_pb2.ContentDelta(index=delta.index))
        texts.setdefault(delta.index, []).append(delta.text)
        choice.logprobs.extend(cast(list[chat_pb2.TokenLogprob], delta.logprobs))
        for piece in cast(list[chat_pb2.ToolCallDelta], delta.tool_calls):
            _join_tool_call(choice.tool_calls, piece)
    for index, parts in texts.items():
        choices[index].text = "".join(parts)
    return scheduler_pb2.CompletedChatCompletion(
        started=_started(started),
        choices=[choices[i] for i in sorted(choices)],
        finished=_finished(finished),
    )


def _join_tool_call(
    calls: MutableSequence[chat_pb2.ToolCallDelta], piece: chat_pb2.ToolCallDelta
) -> None:
    for call in calls:
        if call.index == piece.index:
            call.id = call.id or piece.id
            call.name = call.name or piece.name
            call.arguments += piece.arguments
            return
    calls.append(chat_pb2.ToolCallDelta(
        index=piece.index, id=piece.id, name=piece.name, arguments=piece.arguments
    ))  # fmt: skip


def _coalesce(first: Delta, task: Task) -> tuple[Delta, Event | None]:
    """Joins the deltas of one choice already waiting behind `first` into one message, so
    a caller that fell behind catches up in fewer, larger messages; tool-call pieces never
    join (each is one OpenAI chunk). Returns the first event that does not join, if one
    was taken."""
    if first.tool_calls:
        return first, None
    joined = [first]
    held: Event | None = None
    while not task.events.empty():
        event = task.events.get_nowait()
        if not (isinstance(event, Delta) and event.index == first.index and not event.tool_calls):
            held = event
            break
        joined.append(event)
    if len(joined) == 1:
        return first, held
    text = "".join(d.text for d in joined)
    logprobs = tuple(lp for d in joined for lp in d.logprobs)
    return Delta(first.index, text, (), logprobs), held


def _worker_info(reg: worker_pb2.RegisterWorker) -> WorkerInfo:
    return WorkerInfo(
        worker_id=reg.worker_id,
        name=reg.name[:128] or reg.worker_id,
        backend=reg.backend[:32],
        gpus=tuple(
            Gpu(g.name[:128], g.memory_total_bytes, g.memory_bandwidth_gbps, g.bf16_tflops)
            for g in reg.gpus[:64]
        ),
        models=tuple((m.id, m.owned_by or "gpucloud") for m in reg.models[:256]),
        slots=min(reg.slots, 4096),
        speed=reg.speed,
        capabilities={
            m.id: admission.from_proto(m.capabilities)
            for m in reg.models[:256]
            if m.HasField("capabilities")
        },
    )


def _reading(g: worker_pb2.GpuMetrics) -> GpuReading:
    return GpuReading(
        index=g.index,
        utilization_percent=g.utilization_percent,
        memory_used_bytes=g.memory_used_bytes,
        temperature_celsius=g.temperature_celsius if g.HasField("temperature_celsius") else None,
        power_watts=g.power_watts if g.HasField("power_watts") else None,
    )


def _response(response: type[R], event: Started | Delta | Finished | Queued) -> R:
    if isinstance(event, Delta):
        delta = scheduler_pb2.ContentDelta(index=event.index, text=event.text)
        if event.tool_calls:
            delta.tool_calls.extend(cast(list[chat_pb2.ToolCallDelta], event.tool_calls))
        if event.logprobs:
            delta.logprobs.extend(cast(list[chat_pb2.TokenLogprob], event.logprobs))
        return response(delta=delta)
    if isinstance(event, Started):
        return response(started=_started(event))
    if isinstance(event, Finished):
        return response(finished=_finished(event))
    return response(
        queued=scheduler_pb2.QueuePosition(position=event.position, waited_ms=event.waited_ms)
    )


def _started(event: Started) -> scheduler_pb2.TaskStarted:
    return scheduler_pb2.TaskStarted(
        task_id=event.task_id,
        model=event.model,
        worker_id=event.worker_id,
        queue_wait_ms=event.queue_wait_ms,
        created=event.created,
    )


def _usage(event: Finished) -> chat_pb2.Usage:
    return chat_pb2.Usage(
        prompt_tokens=event.prompt_tokens,
        completion_tokens=event.completion_tokens,
        total_tokens=event.prompt_tokens + event.completion_tokens,
        prompt_tokens_details=chat_pb2.PromptTokensDetails(cached_tokens=event.cached_tokens),
    )


def _finished(event: Finished) -> scheduler_pb2.CompletionFinished:
    usage = _usage(event)
    choices = [chat_pb2.ChoiceFinish(index=i, reason=r) for i, r in event.reasons]  # type: ignore[arg-type]
    return scheduler_pb2.CompletionFinished(
        choices=choices, usage=usage, time_to_first_token_ms=event.time_to_first_token_ms
    )


def _to_worker(message: WorkerMessage) -> scheduler_pb2.WorkerSessionResponse:
    if isinstance(message, Assign):
        task = message.task
        assign = worker_pb2.TaskAssignment(
            task_id=task.id, attempt=message.attempt, model=task.model
        )
        request = cast(Generation, task.spec.payload)
        if isinstance(request, scheduler_pb2.CreateChatCompletionRequest):
            assign.messages.extend(request.messages)
            assign.sampling.CopyFrom(request.sampling)
            assign.tools.extend(request.tools)
            if request.HasField("tool_choice"):
                assign.tool_choice.CopyFrom(request.tool_choice)
            if request.HasField("parallel_tool_calls"):
                assign.parallel_tool_calls = request.parallel_tool_calls
            if request.HasField("response_format"):
                assign.response_format.CopyFrom(request.response_format)
        elif isinstance(request, scheduler_pb2.CreateCompletionRequest):
            assign.completion.CopyFrom(request.prompt)
            assign.sampling.CopyFrom(request.sampling)
        else:
            assign.embedding_inputs.extend(request.inputs)
            assign.embedding_dimensions = request.dimensions
        return scheduler_pb2.WorkerSessionResponse(assign=assign)
    return scheduler_pb2.WorkerSessionResponse(
        cancel=worker_pb2.CancelTask(task_id=message.ref.task_id, attempt=message.ref.attempt)
    )
