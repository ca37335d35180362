"""One Response as the core's events build it, and the stream events that tell it.

The assistant's text is one `message` item, each tool call a `function_call`
item, in the order they began. Items stay open until the completion ends,
since the contract does not promise that one tool call's pieces end before the
next begins; then each is closed in order. A non-streaming request feeds the
whole answer through the same builder and keeps only the Response.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from gpucloud.v1 import chat_pb2, scheduler_pb2
from gpucloud_gateway import responses_objects as objects
from gpucloud_gateway.errors import ApiError
from gpucloud_gateway.openai_params import obfuscation

Event = dict[str, Any]  # one of responses_objects' *Event TypedDicts
_INCOMPLETE: dict[int, objects.IncompleteReason] = {
    chat_pb2.FINISH_REASON_LENGTH: "max_output_tokens",
    chat_pb2.FINISH_REASON_CONTENT_FILTER: "content_filter",
}
# A Response's status -> its items' (those of a queued or running response are in progress).
_ITEM_STATUS: dict[str, objects.ItemStatus] = {
    "completed": "completed",
    "incomplete": "incomplete",
    "failed": "incomplete",
}


@dataclass(slots=True)
class _Text:
    index: int
    id: str
    parts: list[str] = field(default_factory=list)
    logprobs: list[chat_pb2.TokenLogprob] = field(default_factory=list)

    def part(self) -> objects.OutputText:
        return {
            "type": "output_text",
            "text": "".join(self.parts),
            "annotations": [],
            "logprobs": objects.logprobs(self.logprobs),
        }

    def item(self, status: objects.ItemStatus) -> objects.OutputMessage:
        content = [self.part()] if status != "in_progress" else []
        return {
            "id": self.id,
            "type": "message",
            "status": status,
            "content": content,
            "role": "assistant",
        }


@dataclass(slots=True)
class _Call:
    index: int
    id: str
    call_id: str
    name: str
    arguments: list[str] = field(default_factory=list)

    def item(self, status: objects.ItemStatus) -> objects.FunctionCall:
        return {
            "id": self.id,
            "type": "function_call",
            "status": status,
            "arguments": "".join(self.arguments) if status != "in_progress" else "",
            "call_id": self.call_id,
            "name": self.name,
        }


def error_object(error: ApiError) -> objects.ResponseError:
    code: objects.ErrorCode = "server_error"
    if error.status == 429:
        code = "rate_limit_exceeded"
    elif 400 <= error.status < 500:
        code = "invalid_prompt"
    return {"code": code, "message": error.message, "type": error.type, "param": error.param}


class ResponseBuilder:
    """The output of one response; each method returns the events that tell its step."""

    def __init__(
        self,
        key: str,
        created_at: int,
        model: str,
        echo: objects.RequestEcho,
        obfuscate: bool = False,
    ) -> None:
        self.id = f"resp_{key}"
        self.model = model
        self._key = key
        self._created_at = created_at
        self._echo = echo
        self._obfuscate = obfuscate
        self._seq = 0
        self._items: list[_Text | _Call] = []
        self._text: _Text | None = None
        self._calls: dict[int, _Call] = {}
        self._queued = False

    def _event(self, kind: str, **fields: Any) -> Event:
        event = {"type": kind, "sequence_number": self._seq, **fields}
        self._seq += 1
        return event

    def response(self, status: objects.Status) -> objects.Response:
        item_status = _ITEM_STATUS.get(status, "in_progress")
        output = [item.item(item_status) for item in self._items]
        return objects.response(self.id, self._created_at, self.model, self._echo, status, output)

    def begin(self, queued: bool) -> list[Event]:
        """`response.created`, then `.queued` or `.in_progress`."""
        self._queued = queued
        status: objects.Status = "queued" if queued else "in_progress"
        lifecycle = "response.queued" if queued else "response.in_progress"
        return [
            self._event("response.created", response=self.response(status)),
            self._event(lifecycle, response=self.response(status)),
        ]

    def started(self, started: scheduler_pb2.TaskStarted) -> list[Event]:
        self.model = started.model or self.model
        if not self._queued:
            return []
        self._queued = False
        return [self._event("response.in_progress", response=self.response("in_progress"))]

    def delta(self, delta: scheduler_pb2.ContentDelta) -> list[Event]:
        events: list[Event] = []
        if delta.text or delta.logprobs:
            events += self.text(delta.text, delta.logprobs)
        for piece in delta.tool_calls:
            events += self.call(piece.index, piece.id, piece.name, piece.arguments)
        return events

    def text(self, text: str, logprobs: Sequence[chat_pb2.TokenLogprob]) -> list[Event]:
        """A piece of the assistant's text; the first opens the message item."""
        events: list[Event] = []
        item = self._text
        if item is None:
            item = self._text = _Text(len(self._items), f"msg_{self._key}")
            events += self._open_text(item)
        item.parts.append(text)
        item.logprobs.extend(logprobs)
        event = self._event(
            "response.output_text.delta",
            item_id=item.id,
            output_index=item.index,
            content_index=0,
            delta=text,
            logprobs=objects.delta_logprobs(logprobs),
        )
        if self._obfuscate:
            event["obfuscation"] = obfuscation(text)
        events.append(event)
        return events

    def _open_text(self, text: _Text) -> list[Event]:
        self._items.append(text)
        empty: objects.OutputText = {
            "type": "output_text",
            "text": "",
            "annotations": [],
            "logprobs": [],
        }
        where = {"item_id": text.id, "output_index": text.index, "content_index": 0}
        return [
            self._event(
                "response.output_item.added",
                output_index=text.index,
                item=text.item("in_progress"),
            ),
            self._event("response.content_part.added", **where, part=empty),
        ]

    def call(self, index: int, call_id: str, name: str, arguments: str) -> list[Event]:
        """A piece of the tool call at `index`; the first opens its function_call item."""
        events: list[Event] = []
        call = self._calls.get(index)
        if call is None:
            n = len(self._calls)
            call_id = call_id or f"call_{self._key}_{n}"
            call = _Call(len(self._items), f"fc_{self._key}_{n}", call_id, name)
            self._calls[index] = call
            self._items.append(call)
            events.append(
                self._event(
                    "response.output_item.added",
                    output_index=call.index,
                    item=call.item("in_progress"),
                )
            )
        if arguments:
            call.arguments.append(arguments)
            event = self._event(
                "response.function_call_arguments.delta",
                item_id=call.id,
                output_index=call.index,
                delta=arguments,
            )
            if self._obfuscate:
                event["obfuscation"] = obfuscation(arguments)
            events.append(event)
        return events

    def finish(self, finished: scheduler_pb2.CompletionFinished) -> list[Event]:
        """Closes every item, then `response.completed` (or `.incomplete`) with the usage."""
        events: list[Event] = []
        if not self._items:  # an empty answer is still a message
            self._text = _Text(0, f"msg_{self._key}")
            events += self._open_text(self._text)
        reason = finished.choices[0].reason if finished.choices else chat_pb2.FINISH_REASON_STOP
        incomplete = _INCOMPLETE.get(reason)
        status: objects.ItemStatus = "incomplete" if incomplete else "completed"
        for item in self._items:
            events += self._close(item, status)
        response = self.response("incomplete" if incomplete else "completed")
        response["usage"] = objects.usage(finished.usage)
        if incomplete:
            response["incomplete_details"] = {"reason": incomplete}
            events.append(self._event("response.incomplete", response=response))
        else:
            response["completed_at"] = int(time.time())
            events.append(self._event("response.completed", response=response))
        return events

    def _close(self, item: _Text | _Call, status: objects.ItemStatus) -> list[Event]:
        where = {"item_id": item.id, "output_index": item.index}
        if isinstance(item, _Call):
            arguments = "".join(item.arguments)
            done = self._event(
                "response.function_call_arguments.done", **where, arguments=arguments
            )
            return [done, self._item_done(item, status)]
        part = item.part()
        return [
            self._event(
                "response.output_text.done",
                **where,
                content_index=0,
                text=part["text"],
                logprobs=objects.delta_logprobs(item.logprobs),
            ),
            self._event("response.content_part.done", **where, content_index=0, part=part),
            self._item_done(item, status),
        ]

    def _item_done(self, item: _Text | _Call, status: objects.ItemStatus) -> Event:
        return self._event(
            "response.output_item.done", output_index=item.index, item=item.item(status)
        )

    def failed(self, error: ApiError) -> list[Event]:
        """`response.failed`: the output so far, cut short, and the error."""
        response = self.response("failed")
        response["error"] = error_object(error)
        return [self._event("response.failed", response=response)]


def encode(events: list[Event]) -> bytes:
    """The events as SSE, each named by its type."""
    return b"".join(
        b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"
        for event in events
    )
