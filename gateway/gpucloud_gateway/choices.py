"""A whole completion read from the core: its start, each choice's output joined, its end."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import grpc

from gpucloud.v1 import chat_pb2, scheduler_pb2
from gpucloud_gateway.errors import ApiError

# More choices than the core allows (16) by far: an index past this is a broken core.
_MOST_CHOICES = 256


@dataclass(slots=True)
class CallOutput:
    """One tool call of a choice, its argument fragments in order."""

    id: str
    name: str
    arguments: list[str]


@dataclass(slots=True)
class ChoiceOutput:
    """What one choice generated: text, tool calls (by index) and token logprobs."""

    text: list[str] = field(default_factory=list)
    calls: dict[int, CallOutput] = field(default_factory=dict)
    logprobs: list[chat_pb2.TokenLogprob] = field(default_factory=list)

    def add(self, delta: scheduler_pb2.ContentDelta) -> None:
        self.text.append(delta.text)
        for piece in delta.tool_calls:
            call = self.calls.get(piece.index)
            if call is None:
                self.calls[piece.index] = CallOutput(piece.id, piece.name, [piece.arguments])
            else:
                call.id, call.name = call.id or piece.id, call.name or piece.name
                call.arguments.append(piece.arguments)
        self.logprobs.extend(delta.logprobs)

    @property
    def content(self) -> str:
        return "".join(self.text)

    def tool_calls(self) -> list[CallOutput]:
        return [self.calls[i] for i in sorted(self.calls)]


@dataclass(frozen=True, slots=True)
class Answer:
    """A finished completion."""

    started: scheduler_pb2.TaskStarted
    choices: list[ChoiceOutput]
    finished: scheduler_pb2.CompletionFinished


async def read_all(call: Any, first: Any, n: int) -> Answer:
    """Reads a whole chat or text completion from its first event on; `n` is how many
    choices it has (more are taken as they come)."""
    choices = [ChoiceOutput() for _ in range(n)]
    started: scheduler_pb2.TaskStarted | None = None
    finished: scheduler_pb2.CompletionFinished | None = None
    message = first
    while message is not grpc.aio.EOF:
        kind = message.WhichOneof("event")
        if kind == "completed":  # the whole answer at once: what the gateway asks for
            started, finished = message.completed.started, message.completed.finished
            for choice in message.completed.choices:
                _choice(choices, choice.index).add(choice)
        elif kind == "delta":
            _choice(choices, message.delta.index).add(message.delta)
        elif kind == "started":
            started = message.started
        elif kind == "finished":
            finished = message.finished
        message = await call.read()
    if started is None or finished is None:
        raise ApiError(502, "The inference service ended the completion without a result.")
    return Answer(started, choices, finished)


def _choice(choices: list[ChoiceOutput], index: int) -> ChoiceOutput:
    if index >= _MOST_CHOICES:
        raise ApiError(502, "The inference service sent output for a choice that does not exist.")
    while index >= len(choices):
        choices.append(ChoiceOutput())
    return choices[index]
