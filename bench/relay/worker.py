"""The relay worker: one session with the relay core; answers each task with one chunk per
token and a done, without delay (like the sim at speed 0).

    python -m bench.relay.worker --core 127.0.0.1:50061
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator

import grpc

from bench.relay import run
from gpucloud.v1 import chat_pb2, scheduler_pb2, scheduler_pb2_grpc, worker_pb2

Outgoing = scheduler_pb2.WorkerSessionRequest
WORD = " word"
DEFAULT_TOKENS = 16


def answer(task: worker_pb2.TaskAssignment) -> list[Outgoing]:
    tokens = task.sampling.max_tokens or DEFAULT_TOKENS
    prompt = sum(len(m.content) for m in task.messages) // 4 + 4 * len(task.messages) + 3
    token = worker_pb2.TaskChunk(task_id=task.task_id, attempt=task.attempt, text=WORD, tokens=1)
    done = worker_pb2.TaskDone(
        task_id=task.task_id,
        attempt=task.attempt,
        choices=[chat_pb2.ChoiceFinish(index=0, reason=chat_pb2.FINISH_REASON_LENGTH)],
        usage=chat_pb2.Usage(
            prompt_tokens=prompt, completion_tokens=tokens, total_tokens=prompt + tokens
        ),
    )
    return [*(Outgoing(chunk=token) for _ in range(tokens)), Outgoing(done=done)]


async def session(core: str) -> None:
    outbox: asyncio.Queue[Outgoing] = asyncio.Queue()
    outbox.put_nowait(Outgoing(register=worker_pb2.RegisterWorker(
        worker_id="relay-worker", name="relay-worker", backend="relay", slots=1 << 16,
    )))  # fmt: skip

    async def writer() -> AsyncIterator[Outgoing]:
        while True:
            yield await outbox.get()

    async with grpc.aio.insecure_channel(core) as channel:
        session = scheduler_pb2_grpc.SchedulerServiceStub(channel).WorkerSession(writer())
        async for message in session:
            if message.WhichOneof("payload") == "assign":
                for reply in answer(message.assign):
                    outbox.put_nowait(reply)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--core", required=True)
    run(session(parser.parse_args().core))


if __name__ == "__main__":
    main()
