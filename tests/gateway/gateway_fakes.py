"""A fake core for gateway tests: real grpc.aio servicers on port 0 with scripted answers.

API key `sk-good` works (`sk-limited` too, with x-ratelimit-* metadata); the
model name picks the scenario, so each test reads as the behaviour it checks.
The rules on values are the real core's: chat, text completion and embedding
requests pass its validation and its admission against the capabilities the
fake's models declare (CAPABILITIES), new keys its key spec, and errors leave
through its interceptor, so the gateway is tested against the refusals (status,
code, param) the core really sends.

Answers follow the request: tools (unless tool_choice is "none") get a call of the
chosen or first function streamed in pieces (two calls when two tools are given and
parallel calls are allowed), a JSON response_format gets STRUCTURED, other requests
REPLY; each token carries logprobs when asked for. Text completions answer each
choice with REPLY (after the prompt with `echo`); embeddings are unit vectors.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from gpucloud.v1 import (
    auth_pb2,
    auth_pb2_grpc,
    chat_pb2,
    monitor_pb2,
    monitor_pb2_grpc,
    scheduler_pb2,
    scheduler_pb2_grpc,
    worker_pb2,
)
from gpucloud_server.errors import NotFound
from gpucloud_server.identity.keyspec import KeyDefaults, validate_spec
from gpucloud_server.interceptor import ErrorInterceptor
from gpucloud_server.scheduling import capabilities
from gpucloud_server.scheduling.capabilities import Capabilities, Needs
from gpucloud_server.servicers import admission
from gpucloud_server.servicers.auth import key_spec
from gpucloud_server.servicers.validation import (
    check_chat_request,
    check_completion_request,
    check_embedding_request,
)

GOOD_KEY = "sk-good"
LIMITED_KEY = "sk-limited"
ADMIN_JWT = "jwt-admin"
MEMBER_JWT = "jwt-member"
MODEL = "sim-small"
EMBEDDER = "sim-embed"
REPLY = ("Hel", "lo", " world")
STRUCTURED = ('{"name": "Ada", ', '"age": 36}')
ARGUMENTS = ('{"city": ', '"Paris"}')
EMBEDDING_DIMENSIONS = 8
ALL_FEATURES = Capabilities(
    tools=True,
    json_schema=True,
    logprobs=True,
    completions=True,
    image_input=True,
    audio_input=True,
    file_input=True,
)
# What the fake's models declare; models not named here have no declared worker, so the
# core's admission lets them through to the scenario the name picks.
CAPABILITIES = {
    MODEL: ALL_FEATURES,
    "text-only": Capabilities(),
    "small-context": Capabilities(tools=True, max_context_tokens=32, completions=True),
    EMBEDDER: Capabilities(
        embeddings=True, embedding_dimensions=EMBEDDING_DIMENSIONS, variable_dimensions=True
    ),
}
# Scenario models that start a task (the others refuse it, or are not served).
_SERVED = (MODEL, *CAPABILITIES, "queued", "fail-mid", "slow", "pause", "unfinished", "too-long")
RATE_HEADERS = (
    ("x-ratelimit-limit-requests", "60"),
    ("x-ratelimit-remaining-requests", "59"),
    ("x-ratelimit-reset-requests", "1.000s"),
)
KEY_DEFAULTS = KeyDefaults(requests_per_minute=60, tokens_per_minute=0)
Event = scheduler_pb2.CreateChatCompletionResponse
Request = scheduler_pb2.CreateChatCompletionRequest | scheduler_pb2.CreateCompletionRequest


@dataclass
class Seen:
    """What the fake core saw, for assertions."""

    metadata: list[dict[str, str]] = field(default_factory=list)
    requests: list[scheduler_pb2.CreateChatCompletionRequest] = field(default_factory=list)
    completions: list[scheduler_pb2.CreateCompletionRequest] = field(default_factory=list)
    embeddings: list[scheduler_pb2.CreateEmbeddingRequest] = field(default_factory=list)
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    slow_started: asyncio.Event = field(default_factory=asyncio.Event)


def _metadata(context: grpc.aio.ServicerContext) -> dict[str, str]:
    return {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}


def _started(model: str) -> Event:
    return Event(
        started=scheduler_pb2.TaskStarted(
            task_id="task123", model=model, worker_id="w-1", queue_wait_ms=7, created=1700000000
        )
    )


def _finished(n: int, completion_tokens: int, reason: int = chat_pb2.FINISH_REASON_STOP) -> Event:
    return Event(
        finished=scheduler_pb2.CompletionFinished(
            choices=[chat_pb2.ChoiceFinish(index=i, reason=reason) for i in range(n)],  # type: ignore[arg-type]
            usage=chat_pb2.Usage(
                prompt_tokens=5,
                completion_tokens=completion_tokens,
                total_tokens=5 + completion_tokens,
            ),
            time_to_first_token_ms=12,
        )
    )


def _logprobs(token: str, sampling: chat_pb2.SamplingParams) -> list[chat_pb2.TokenLogprob]:
    if not sampling.logprobs:
        return []
    top = [
        chat_pb2.TopLogprob(token=token, logprob=-0.25),
        chat_pb2.TopLogprob(token="x", logprob=-3.0),
    ]
    return [
        chat_pb2.TokenLogprob(token=token, logprob=-0.25, top_logprobs=top[: sampling.top_logprobs])
    ]


def _tool_calls(request: scheduler_pb2.CreateChatCompletionRequest) -> list[str]:
    """The functions the answer calls: none without tools or with tool_choice "none"."""
    if not request.tools or request.tool_choice.mode == chat_pb2.TOOL_CHOICE_MODE_NONE:
        return []
    if request.tool_choice.mode == chat_pb2.TOOL_CHOICE_MODE_FUNCTION:
        return [request.tool_choice.function]
    names = [t.name for t in request.tools]
    parallel = not request.HasField("parallel_tool_calls") or request.parallel_tool_calls
    return names[:2] if parallel else names[:1]


def _chat_output(request: scheduler_pb2.CreateChatCompletionRequest) -> Iterator[Event]:
    """The deltas of every choice, round-robin, then `finished`."""
    n = request.sampling.n or 1
    calls = _tool_calls(request)
    if calls:
        for k, name in enumerate(calls):
            first = chat_pb2.ToolCallDelta(index=k, id=f"call_{k + 1}", name=name)
            pieces = [first, *(chat_pb2.ToolCallDelta(index=k, arguments=a) for a in ARGUMENTS)]
            for piece in pieces:
                for index in range(n):
                    yield Event(delta=scheduler_pb2.ContentDelta(index=index, tool_calls=[piece]))
        yield _finished(n, 4 * len(calls) * n, chat_pb2.FINISH_REASON_TOOL_CALLS)
        return
    structured = request.response_format.type in (
        chat_pb2.RESPONSE_FORMAT_TYPE_JSON_OBJECT,
        chat_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA,
    )
    texts = STRUCTURED if structured else REPLY
    for text in texts:
        for index in range(n):
            logprobs = _logprobs(text, request.sampling)
            yield Event(delta=scheduler_pb2.ContentDelta(index=index, text=text, logprobs=logprobs))
    yield _finished(n, len(texts) * n)


def _completion_output(request: scheduler_pb2.CreateCompletionRequest) -> Iterator[Event]:
    """Each choice's text (after its prompt, with echo); choice p*n+j answers prompt p."""
    n = request.sampling.n or 1
    prompts = request.prompt.prompts
    choices = len(prompts) * n
    if request.prompt.echo:
        for index in range(choices):
            yield Event(delta=scheduler_pb2.ContentDelta(index=index, text=prompts[index // n]))
    for text in REPLY:
        for index in range(choices):
            logprobs = _logprobs(text, request.sampling)
            yield Event(delta=scheduler_pb2.ContentDelta(index=index, text=text, logprobs=logprobs))
    yield _finished(choices, len(REPLY) * choices)


def _embedding(index: int, dimensions: int) -> list[float]:
    vector = [0.0] * dimensions
    vector[index % dimensions], vector[(index + 1) % dimensions] = 0.6, 0.8
    return vector


def _admit(model: str, needs: Needs) -> None:
    """The core's capability check against the fake's declarations."""
    declared = CAPABILITIES.get(model)
    capabilities.check(model, needs, [declared] if declared else [])


class FakeScheduler(scheduler_pb2_grpc.SchedulerServiceServicer):
    def __init__(self, seen: Seen) -> None:
        self.seen = seen
        # A core from before `collect`: it streams events to every caller.
        self.ignores_collect = False

    async def _auth(self, context: grpc.aio.ServicerContext) -> None:
        md = _metadata(context)
        self.seen.metadata.append(md)
        key = md.get("authorization", "").removeprefix("Bearer ")
        if key not in (GOOD_KEY, LIMITED_KEY):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "invalid API key")
        headers = [("x-request-id", md.get("x-request-id", ""))]
        if key == LIMITED_KEY:
            headers += RATE_HEADERS
        await context.send_initial_metadata(tuple(headers))

    async def ListModels(
        self, request: scheduler_pb2.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> scheduler_pb2.ListModelsResponse:
        await self._auth(context)
        return scheduler_pb2.ListModelsResponse(
            models=[
                scheduler_pb2.ModelEntry(
                    id=MODEL,
                    owned_by="gpucloud",
                    created=1,
                    workers=2,
                    capabilities=worker_pb2.ModelCapabilities(tools=True, max_context_tokens=4096),
                )
            ]
        )

    async def CreateChatCompletion(
        self,
        request: scheduler_pb2.CreateChatCompletionRequest,
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[Event]:
        self.seen.requests.append(request)
        await self._admit(request, context)
        check_chat_request(request)
        _admit(request.model, admission.chat_needs(request))
        async for event in self._relay(request, context, _chat_output(request)):
            yield event

    async def CreateCompletion(
        self,
        request: scheduler_pb2.CreateCompletionRequest,
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[scheduler_pb2.CreateCompletionResponse]:
        self.seen.completions.append(request)
        await self._admit(request, context)
        check_completion_request(request)
        _admit(request.model, admission.completion_needs(request))
        async for event in self._relay(request, context, _completion_output(request)):
            # The two event messages are the same, field for field.
            yield scheduler_pb2.CreateCompletionResponse.FromString(event.SerializeToString())

    async def CreateEmbedding(
        self,
        request: scheduler_pb2.CreateEmbeddingRequest,
        context: grpc.aio.ServicerContext,
    ) -> scheduler_pb2.CreateEmbeddingResponse:
        self.seen.embeddings.append(request)
        await self._admit(request, context)
        check_embedding_request(request)
        _admit(request.model, admission.embedding_needs(request))
        await self._refusals(request.model, context)
        if request.model != EMBEDDER:
            raise NotFound(
                f"model '{request.model}' is not served", code="model_not_found", param="model"
            )
        dimensions = request.dimensions if request.HasField("dimensions") else EMBEDDING_DIMENSIONS
        tokens = sum(len(i.token_ids) or len(i.text.split()) for i in request.inputs)
        return scheduler_pb2.CreateEmbeddingResponse(
            started=_started(request.model).started,
            data=[
                chat_pb2.Embedding(index=i, values=_embedding(i, dimensions))
                for i in range(len(request.inputs))
            ],
            usage=chat_pb2.Usage(prompt_tokens=tokens, total_tokens=tokens),
        )

    async def _admit(
        self,
        request: Request | scheduler_pb2.CreateEmbeddingRequest,
        context: grpc.aio.ServicerContext,
    ) -> None:
        if request.model == "rate-limited":
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "rate limit reached: 60 requests per minute",
                (("retry-after-ms", "1500"), *RATE_HEADERS),
            )
        await self._auth(context)

    async def _relay(
        self, request: Request, context: grpc.aio.ServicerContext, output: Iterator[Event]
    ) -> AsyncIterator[Event]:
        events = self._script(request, context, output)
        if request.collect and not self.ignores_collect:
            events = _collected(events)
        try:
            async for event in events:
                yield event
        except asyncio.CancelledError:
            self.seen.cancelled.set()
            raise

    @staticmethod
    async def _refusals(scenario: str, context: grpc.aio.ServicerContext) -> None:
        aborts = {
            "forbidden": (
                grpc.StatusCode.PERMISSION_DENIED,
                "this API key may not use model 'forbidden'",
            ),
            "no-capacity": (grpc.StatusCode.UNAVAILABLE, "no worker has capacity for this model"),
            "bad-sampling": (grpc.StatusCode.INVALID_ARGUMENT, "top_p must be at most 1"),
        }
        if scenario in aborts:
            code, message = aborts[scenario]
            await context.abort(code, message, (("retry-after-ms", "250"),))
        if scenario == "internal":
            raise RuntimeError("database password is hunter2")

    async def _script(
        self, request: Request, context: grpc.aio.ServicerContext, output: Iterator[Event]
    ) -> AsyncIterator[Event]:
        scenario = request.model
        await self._refusals(scenario, context)
        if scenario not in _SERVED:
            raise NotFound(
                f"model '{scenario}' is not served", code="model_not_found", param="model"
            )
        if scenario == "queued":
            for position in (2, 1, 0):
                yield Event(queued=scheduler_pb2.QueuePosition(position=position, waited_ms=5))
        yield _started(scenario)
        if scenario == "too-long":  # the worker refuses the prompt, as the core relays it
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "This model's maximum context length is 8192 tokens.",
                (("x-error-code", "context_length_exceeded"), ("x-error-param", "messages")),
            )
        if scenario == "pause":
            await asyncio.sleep(0.5)
        events = list(output)
        for event in events[:-1]:
            yield event
        if scenario == "fail-mid":
            await context.abort(grpc.StatusCode.UNAVAILABLE, "worker w-1 went away mid-stream")
        if scenario == "unfinished":
            return  # ends OK without `finished`: a broken core
        if scenario == "slow":
            self.seen.slow_started.set()
            while True:
                await asyncio.sleep(0.05)
                yield Event(delta=scheduler_pb2.ContentDelta(index=0, text="."))
        yield events[-1]


async def _collected(events: AsyncIterator[Event]) -> AsyncIterator[Event]:
    """The whole answer in one `completed` event, as the core sends it when asked to collect:
    each choice's text and logprobs joined, its tool calls one whole call per index."""
    done = scheduler_pb2.CompletedChatCompletion()
    choices: dict[int, scheduler_pb2.ContentDelta] = {}
    calls: dict[tuple[int, int], chat_pb2.ToolCallDelta] = {}
    async for event in events:
        kind = event.WhichOneof("event")
        if kind == "started":
            done.started.CopyFrom(event.started)
        elif kind == "delta":
            delta = event.delta
            choice = choices.setdefault(delta.index, scheduler_pb2.ContentDelta(index=delta.index))
            choice.text += delta.text
            choice.logprobs.extend(delta.logprobs)
            for piece in delta.tool_calls:
                call = calls.get((delta.index, piece.index))
                if call is None:
                    calls[delta.index, piece.index] = call = choice.tool_calls.add()
                    call.CopyFrom(piece)
                else:
                    call.arguments += piece.arguments
        elif kind == "finished":
            done.finished.CopyFrom(event.finished)
            done.choices.extend(choice for _, choice in sorted(choices.items()))
            yield Event(completed=done)


def _ts(seconds: int) -> Timestamp:
    return Timestamp(seconds=seconds)


class FakeAuth(auth_pb2_grpc.AuthServiceServicer):
    """Two users; keys belong to whoever created them (admins see all)."""

    USERS = {
        ADMIN_JWT: auth_pb2.User(id="u-admin", email="admin@test", role=auth_pb2.USER_ROLE_ADMIN),
        MEMBER_JWT: auth_pb2.User(
            id="u-member", email="member@test", role=auth_pb2.USER_ROLE_MEMBER
        ),
    }

    def __init__(self) -> None:
        self.keys: dict[str, auth_pb2.ApiKey] = {}
        self.passwords_changed = 0

    async def _user(self, context: grpc.aio.ServicerContext) -> auth_pb2.User:
        token = _metadata(context).get("authorization", "").removeprefix("Bearer ")
        if token not in self.USERS:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "invalid or expired session")
        return self.USERS[token]

    async def Login(
        self, request: auth_pb2.LoginRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.LoginResponse:
        if (request.email, request.password) != ("admin@test", "admin123"):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "wrong email or password")
        return auth_pb2.LoginResponse(token=ADMIN_JWT, user=self.USERS[ADMIN_JWT], expires_at=99)

    async def GetMe(
        self, request: auth_pb2.GetMeRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.GetMeResponse:
        return auth_pb2.GetMeResponse(user=await self._user(context))

    async def ChangePassword(
        self, request: auth_pb2.ChangePasswordRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.ChangePasswordResponse:
        user = await self._user(context)
        if request.current_password != "admin123":
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "wrong password")
        self.passwords_changed += 1
        return auth_pb2.ChangePasswordResponse(user=user)

    async def CreateApiKey(
        self, request: auth_pb2.CreateApiKeyRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.CreateApiKeyResponse:
        user = await self._user(context)
        is_admin = user.role == auth_pb2.USER_ROLE_ADMIN
        spec = validate_spec(key_spec(request), KEY_DEFAULTS, time.time(), is_admin=is_admin)
        key_id = f"key-{len(self.keys) + 1}"
        key = auth_pb2.ApiKey(
            id=key_id,
            name=spec.name,
            owner_id=user.id,
            owner_email=user.email,
            last4="abcd",
            created_at=_ts(1_700_000_000),
            rate_limit_per_minute=spec.requests_per_minute,
            tokens_per_minute=spec.tokens_per_minute,
            priority=spec.priority,
            allowed_models=spec.allowed_models,
        )
        if request.HasField("expires_at"):
            key.expires_at.CopyFrom(request.expires_at)
        self.keys[key_id] = key
        return auth_pb2.CreateApiKeyResponse(key=key, secret=f"gpc_secret_{key_id}_abcd")

    async def ListApiKeys(
        self, request: auth_pb2.ListApiKeysRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.ListApiKeysResponse:
        user = await self._user(context)
        mine = [
            k
            for k in self.keys.values()
            if user.role == auth_pb2.USER_ROLE_ADMIN or k.owner_id == user.id
        ]
        return auth_pb2.ListApiKeysResponse(keys=mine)

    async def RevokeApiKey(
        self, request: auth_pb2.RevokeApiKeyRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.RevokeApiKeyResponse:
        user = await self._user(context)
        key = self.keys.get(request.id)
        if key is None or (key.owner_id != user.id and user.role != auth_pb2.USER_ROLE_ADMIN):
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no API key '{request.id}'")
        key.revoked_at.CopyFrom(_ts(1_700_000_100))
        return auth_pb2.RevokeApiKeyResponse(key=key)


def worker_status(state: int = monitor_pb2.WORKER_STATE_ONLINE) -> monitor_pb2.WorkerStatus:
    return monitor_pb2.WorkerStatus(
        worker_id="w-1",
        name="sim-a100",
        backend="sim",
        state=state,  # type: ignore[arg-type]
        gpus=[worker_pb2.GpuSpec(name="NVIDIA A100 80GB", memory_total_bytes=80 << 30)],
        metrics=[
            worker_pb2.GpuMetrics(index=0, utilization_percent=42.5, memory_used_bytes=10 << 30)
        ],
        models=[MODEL],
        active_tasks=1,
        slots=8,
        last_heartbeat=_ts(1_700_000_000),
    )


class FakeMonitor(monitor_pb2_grpc.MonitorServiceServicer):
    async def _check(self, context: grpc.aio.ServicerContext) -> None:
        token = _metadata(context).get("authorization", "").removeprefix("Bearer ")
        if token not in FakeAuth.USERS:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "invalid or expired session")

    async def ListWorkers(
        self, request: monitor_pb2.ListWorkersRequest, context: grpc.aio.ServicerContext
    ) -> monitor_pb2.ListWorkersResponse:
        await self._check(context)
        return monitor_pb2.ListWorkersResponse(workers=[worker_status()])

    async def GetQueue(
        self, request: monitor_pb2.GetQueueRequest, context: grpc.aio.ServicerContext
    ) -> monitor_pb2.GetQueueResponse:
        await self._check(context)
        return monitor_pb2.GetQueueResponse(
            depth=3,
            capacity=1000,
            by_priority=[monitor_pb2.PriorityDepth(priority=5, depth=3)],
            recent_waits_ms=[1, 2],
            running=2,
        )

    async def GetMetrics(
        self, request: monitor_pb2.GetMetricsRequest, context: grpc.aio.ServicerContext
    ) -> monitor_pb2.GetMetricsResponse:
        await self._check(context)
        return monitor_pb2.GetMetricsResponse(
            buckets=[
                monitor_pb2.MetricsBucket(start=_ts(1_700_000_000), requests=request.window_minutes)
            ],
            by_model=[monitor_pb2.UsageSlice(id=MODEL, label=MODEL, requests=4, prompt_tokens=20)],
        )

    async def Watch(
        self, request: monitor_pb2.WatchRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[monitor_pb2.WatchResponse]:
        await self._check(context)
        yield monitor_pb2.WatchResponse(worker=worker_status())
        while True:
            yield monitor_pb2.WatchResponse(
                stats=monitor_pb2.ClusterStats(workers_online=1, queue_depth=3)
            )
            await asyncio.sleep(0.05)


@dataclass
class FakeCore:
    server: grpc.aio.Server
    port: int
    seen: Seen
    scheduler: FakeScheduler
    auth: FakeAuth
    health: health.aio.HealthServicer

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


async def start_fake_core() -> FakeCore:
    server = grpc.aio.server(interceptors=[ErrorInterceptor()])
    seen = Seen()
    auth = FakeAuth()
    health_servicer = health.aio.HealthServicer()
    scheduler = FakeScheduler(seen)
    scheduler_pb2_grpc.add_SchedulerServiceServicer_to_server(scheduler, server)
    auth_pb2_grpc.add_AuthServiceServicer_to_server(auth, server)
    monitor_pb2_grpc.add_MonitorServiceServicer_to_server(FakeMonitor(), server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    for name in ("", "gpucloud.v1.SchedulerService"):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return FakeCore(server, port, seen, scheduler, auth, health_servicer)
