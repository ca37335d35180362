"""gateway_fakes' core plus the output the Responses API tells apart: tool calls, an answer
cut short, logprobs. Collected answers are joined as the real core joins them (tool calls
whole, per index), so the non-streaming path sees what it would in production."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import grpc
import orjson
import pydantic
from gateway_fakes import Event, FakeAuth, FakeCore, FakeScheduler, Seen
from grpc_health.v1 import health
from openai.types.responses import Response, ResponseStreamEvent

from gpucloud.v1 import auth_pb2_grpc, chat_pb2, scheduler_pb2, scheduler_pb2_grpc
from gpucloud_server.interceptor import ErrorInterceptor
from gpucloud_server.servicers.validation import check_chat_request

TOOLS_MODEL = "tool-caller"  # calls two functions; answers in text once it has their output
CUT_MODEL = "cut-short"  # stops at the token limit
LOGPROBS_MODEL = "with-logprobs"  # text with a logprob per token
WEATHER_ARGS = ('{"city":', ' "Paris"}')
ANSWER = "It is 21 °C in Paris."
Request = scheduler_pb2.CreateChatCompletionRequest


def _started(model: str) -> Event:
    return Event(
        started=scheduler_pb2.TaskStarted(
            task_id="task-r1", model=model, worker_id="w-1", queue_wait_ms=3, created=1700000000
        )
    )


def _finished(reason: chat_pb2.FinishReason, completion_tokens: int) -> Event:
    usage = chat_pb2.Usage(
        prompt_tokens=11,
        completion_tokens=completion_tokens,
        total_tokens=11 + completion_tokens,
        prompt_tokens_details=chat_pb2.PromptTokensDetails(cached_tokens=4),
    )
    finish = chat_pb2.ChoiceFinish(index=0, reason=reason)
    return Event(finished=scheduler_pb2.CompletionFinished(choices=[finish], usage=usage))


def _text(text: str, *logprobs: chat_pb2.TokenLogprob) -> Event:
    return Event(delta=scheduler_pb2.ContentDelta(index=0, text=text, logprobs=logprobs))


def _piece(index: int, arguments: str, id: str = "", name: str = "") -> Event:
    call = chat_pb2.ToolCallDelta(index=index, id=id, name=name, arguments=arguments)
    return Event(delta=scheduler_pb2.ContentDelta(index=0, tool_calls=[call]))


def tool_caller(request: Request) -> Iterator[Event]:
    yield _started(request.model)
    if request.messages[-1].role == "tool":
        yield _text(ANSWER)
        yield _finished(chat_pb2.FINISH_REASON_STOP, 8)
        return
    yield _text("Let me check.")
    yield _piece(0, "", id="call_w", name="get_weather")
    yield _piece(0, WEATHER_ARGS[0])
    yield _piece(0, WEATHER_ARGS[1])
    yield _piece(1, "{}", id="call_t", name="get_time")
    yield _finished(chat_pb2.FINISH_REASON_TOOL_CALLS, 20)


def cut_short(request: Request) -> Iterator[Event]:
    yield _started(request.model)
    yield _text("Once upon")
    yield _text(" a time")
    yield _finished(chat_pb2.FINISH_REASON_LENGTH, 4)


def with_logprobs(request: Request) -> Iterator[Event]:
    yield _started(request.model)
    alternative = chat_pb2.TopLogprob(token="Hey", logprob=-1.5)
    yield _text("Hi", chat_pb2.TokenLogprob(token="Hi", logprob=-0.25, top_logprobs=[alternative]))
    yield _text("é", chat_pb2.TokenLogprob(token="é", logprob=-0.5))
    yield _finished(chat_pb2.FINISH_REASON_STOP, 2)


SCRIPTS: dict[str, Callable[[Request], Iterator[Event]]] = {
    TOOLS_MODEL: tool_caller,
    CUT_MODEL: cut_short,
    LOGPROBS_MODEL: with_logprobs,
}


def collected(events: Iterator[Event]) -> Event:
    """The whole answer in one `completed` event: text and logprobs joined, tool calls whole."""
    done = scheduler_pb2.CompletedChatCompletion()
    choice = scheduler_pb2.ContentDelta(index=0)
    for event in events:
        kind = event.WhichOneof("event")
        if kind == "started":
            done.started.CopyFrom(event.started)
        elif kind == "finished":
            done.finished.CopyFrom(event.finished)
        elif kind == "delta":
            choice.text += event.delta.text
            choice.logprobs.extend(event.delta.logprobs)
            for piece in event.delta.tool_calls:
                calls = {call.index: call for call in choice.tool_calls}
                if piece.index in calls:
                    calls[piece.index].arguments += piece.arguments
                else:
                    choice.tool_calls.append(piece)
    done.choices.append(choice)
    return Event(completed=done)


class ResponsesScheduler(FakeScheduler):
    async def CreateChatCompletion(
        self, request: Request, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Event]:
        script = SCRIPTS.get(request.model)
        if script is None:
            async for event in super().CreateChatCompletion(request, context):
                yield event
            return
        self.seen.requests.append(request)
        await self._auth(context)
        check_chat_request(request)
        if request.collect:
            yield collected(script(request))
            return
        for event in script(request):
            yield event


async def start_responses_core() -> FakeCore:
    server = grpc.aio.server(interceptors=[ErrorInterceptor()])
    seen = Seen()
    scheduler = ResponsesScheduler(seen)
    auth = FakeAuth()
    health_servicer = health.aio.HealthServicer()
    scheduler_pb2_grpc.add_SchedulerServiceServicer_to_server(scheduler, server)
    auth_pb2_grpc.add_AuthServiceServicer_to_server(auth, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return FakeCore(server, port, seen, scheduler, auth, health_servicer)


def sse(body: str) -> list[tuple[str, dict[str, Any]]]:
    """A Responses stream's events as (event name, data), comments left out; each event's
    name must be its data's type."""
    out: list[tuple[str, dict[str, Any]]] = []
    for block in body.split("\n\n"):
        lines = [line for line in block.split("\n") if line and not line.startswith(":")]
        if not lines:
            continue
        assert lines[0].startswith("event: ") and lines[1].startswith("data: "), block
        name, data = lines[0].removeprefix("event: "), orjson.loads(lines[1].removeprefix("data: "))
        assert data["type"] == name
        out.append((name, data))
    return out


RESPONSE = pydantic.TypeAdapter[Response](Response)
STREAM_EVENT = pydantic.TypeAdapter[Any](ResponseStreamEvent)


def known(adapter: pydantic.TypeAdapter[Any], data: Any, where: str) -> Any:
    """`data` as openai-python reads it, strictly (no coercion) and with no field it does not
    know: up_fixtures' check, with the adapters built once (building one takes ~0.1 s)."""
    value = adapter.validate_python(data, strict=True)
    _no_extra(value, where)
    return value


def _no_extra(value: Any, where: str) -> None:
    if isinstance(value, pydantic.BaseModel):
        assert not value.model_extra, f"{where}: unknown fields {sorted(value.model_extra)}"
        for name in type(value).model_fields:
            _no_extra(getattr(value, name), f"{where}.{name}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _no_extra(item, f"{where}[{i}]")
