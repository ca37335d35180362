"""Prefix-cache hits reach the client: a worker's cached prompt tokens travel through
the core to usage.prompt_tokens_details.cached_tokens, never more than the prompt."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import pytest
from core_cluster import SIM_MODEL, Cluster, RawWorker, ScriptedBackend, collect, until

from gpucloud.v1 import chat_pb2, scheduler_pb2, worker_pb2
from gpucloud_worker.backend import Chunk, Finish, FinishReason, GenerationRequest
from gpucloud_worker.sim import SimBackend


class CachesPrompts(ScriptedBackend):
    """Reports `cached` of its 5 prompt tokens as served from its prefix cache."""

    def __init__(self, cached: int) -> None:
        super().__init__(tokens=1)
        self.cached = cached

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[Chunk | Finish, None]:
        yield Chunk(0, "t0 ", 1, prompt_tokens=5)
        yield Finish((FinishReason.STOP,), 5, 1, cached_tokens=self.cached)


def finished_usage(events: list[scheduler_pb2.CreateChatCompletionResponse]) -> chat_pb2.Usage:
    assert events[-1].WhichOneof("event") == "finished"
    return events[-1].finished.usage


@pytest.mark.parametrize("collected", [False, True], ids=["streamed", "collected"])
async def test_cached_prompt_tokens_reach_the_client(cluster: Cluster, collected: bool) -> None:
    await cluster.add_worker(CachesPrompts(cached=4), "w1")
    events = await collect(cluster.chat(collect=collected))
    usage = events[-1].completed.finished.usage if collected else finished_usage(events)
    assert (usage.prompt_tokens, usage.prompt_tokens_details.cached_tokens) == (5, 4)


async def test_a_backend_without_cache_reports_none_cached(cluster: Cluster) -> None:
    await cluster.add_worker(ScriptedBackend(tokens=1), "w1")
    usage = finished_usage(await collect(cluster.chat()))
    assert usage.HasField("prompt_tokens_details")
    assert usage.prompt_tokens_details.cached_tokens == 0


async def test_the_core_caps_a_workers_cached_count_at_its_prompt(cluster: Cluster) -> None:
    """A worker's word is bounded: no more cached tokens than prompt tokens."""
    raw = RawWorker(cluster, "liar")
    await until(lambda: cluster.worker("liar"))
    call = cluster.chat()
    a = await raw.next_assignment()
    raw.outbox.put_nowait(scheduler_pb2.WorkerSessionRequest(
        done=worker_pb2.TaskDone(
            task_id=a.task_id, attempt=a.attempt,
            choices=[chat_pb2.ChoiceFinish(index=0, reason=chat_pb2.FINISH_REASON_STOP)],
            usage=chat_pb2.Usage(
                prompt_tokens=7, completion_tokens=1, total_tokens=8,
                prompt_tokens_details=chat_pb2.PromptTokensDetails(cached_tokens=1000),
            ),
        )
    ))  # fmt: skip
    usage = finished_usage(await collect(call))
    assert (usage.prompt_tokens, usage.prompt_tokens_details.cached_tokens) == (7, 7)


async def test_a_simulated_worker_reports_a_repeated_system_prompt_as_cached(
    cluster: Cluster,
) -> None:
    await cluster.add_worker(SimBackend("h100", [SIM_MODEL], speed=0), "sim")
    system = chat_pb2.ChatMessage(role="system", content="You are a careful assistant. " * 200)

    async def usage_of(question: str) -> chat_pb2.Usage:
        request = scheduler_pb2.CreateChatCompletionRequest(
            model=SIM_MODEL,
            messages=[system, chat_pb2.ChatMessage(role="user", content=question)],
            sampling=chat_pb2.SamplingParams(max_tokens=4, seed=1),
        )
        call = cluster.stub.CreateChatCompletion(
            request, metadata=(("authorization", "Bearer key-a"),)
        )
        return finished_usage(await collect(call))

    first = await usage_of("Hello there")
    second = await usage_of("Something else")
    assert first.prompt_tokens_details.cached_tokens == 0
    assert 1000 < second.prompt_tokens_details.cached_tokens < second.prompt_tokens
