"""The relay core: SchedulerService that hands every completion to the one connected worker.

python -m bench.relay.core --port 50061
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
from collections.abc import AsyncIterator

import grpc

from bench.relay import run
from gpucloud.v1 import scheduler_pb2, scheduler_pb2_grpc, worker_pb2

Reply = scheduler_pb2.CreateChatCompletionResponse
FromWorker = scheduler_pb2.WorkerSessionRequest
ToWorker = scheduler_pb2.WorkerSessionResponse


class RelayCore(scheduler_pb2_grpc.SchedulerServiceServicer):
    """One worker session; one queue per completion, fed by the session's reader."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._worker: asyncio.Queue[ToWorker] | None = None
        self._tasks: dict[str, asyncio.Queue[FromWorker]] = {}

    async def WorkerSession(
        self, request_iterator: AsyncIterator[FromWorker], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[ToWorker]:
        outbox: asyncio.Queue[ToWorker] = asyncio.Queue()
        reader = asyncio.create_task(self._read(request_iterator, outbox))
        try:
            while True:
                yield await outbox.get()
        finally:
            reader.cancel()
            self._worker = None

    async def _read(
        self, messages: AsyncIterator[FromWorker], outbox: asyncio.Queue[ToWorker]
    ) -> None:
        async for message in messages:
            kind = message.WhichOneof("payload")
            if kind in ("chunk", "done"):
                queue = self._tasks.get(getattr(message, kind).task_id)
                if queue is not None:
                    queue.put_nowait(message)
            elif kind == "register":
                worker_id = message.register.worker_id
                outbox.put_nowait(
                    ToWorker(registered=worker_pb2.WorkerRegistered(worker_id=worker_id))
                )
                self._worker = outbox

    async def CreateChatCompletion(
        self,
        request: scheduler_pb2.CreateChatCompletionRequest,
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[Reply]:
        if self._worker is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "no worker connected")
        assert self._worker is not None
        task_id = str(next(self._ids))
        queue: asyncio.Queue[FromWorker] = asyncio.Queue()
        self._tasks[task_id] = queue
        try:
            self._worker.put_nowait(ToWorker(assign=worker_pb2.TaskAssignment(
                task_id=task_id, attempt=1, model=request.model,
                messages=request.messages, sampling=request.sampling,
            )))  # fmt: skip
            yield Reply(started=scheduler_pb2.TaskStarted(
                task_id=task_id, model=request.model, worker_id="relay-worker",
            ))  # fmt: skip
            while (message := await queue.get()).WhichOneof("payload") == "chunk":
                yield Reply(delta=scheduler_pb2.ContentDelta(
                    index=message.chunk.index, text=message.chunk.text,
                ))  # fmt: skip
            yield Reply(finished=scheduler_pb2.CompletionFinished(
                choices=message.done.choices, usage=message.done.usage,
            ))  # fmt: skip
        finally:
            del self._tasks[task_id]

    async def ListModels(
        self, request: scheduler_pb2.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> scheduler_pb2.ListModelsResponse:
        return scheduler_pb2.ListModelsResponse()


async def serve(port: int) -> None:
    server = grpc.aio.server()
    scheduler_pb2_grpc.add_SchedulerServiceServicer_to_server(RelayCore(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
