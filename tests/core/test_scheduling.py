"""Scheduling through a real core: dispatch, priorities, spread, bounds, unknown models."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from core_cluster import MODEL, SIM_MODEL, Cluster, ScriptedBackend, collect, text_of, until

from gpucloud.v1 import scheduler_pb2
from gpucloud_worker.sim import SimBackend


async def test_a_completion_streams_started_deltas_and_usage(cluster: Cluster) -> None:
    await cluster.add_worker(ScriptedBackend(tokens=3), "w1")
    call = cluster.chat()
    events = await collect(call)
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds[0] in ("queued", "started")
    assert "started" in kinds and kinds[-1] == "finished"
    assert text_of(events) == "t0 t1 t2 "
    usage = events[-1].finished.usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (5, 3, 8)
    assert dict(await call.initial_metadata())["x-request-id"]
    await until(lambda: len(cluster.identity.usage.records) == 1)
    assert cluster.identity.usage.records[0].outcome == "ok"


async def test_a_collected_completion_is_one_message_even_after_waiting(cluster: Cluster) -> None:
    backend = ScriptedBackend(slots=1, tokens=3)
    backend.gate = asyncio.Event()
    await cluster.add_worker(backend, "w1")
    first = cluster.chat()
    await until(lambda: backend.started)
    second = cluster.chat(collect=True)  # waits in the queue, and hears nothing of it
    await until(lambda: len(cluster.core.scheduler.queue) == 1)
    backend.gate.set()
    await collect(first)
    events = await collect(second)
    assert [e.WhichOneof("event") for e in events] == ["completed"]
    done = events[0].completed
    assert done.started.worker_id == "w1" and done.started.task_id
    assert [(c.index, c.text) for c in done.choices] == [(0, "t0 t1 t2 ")]
    assert done.finished.usage.total_tokens == 8
    assert dict(await second.initial_metadata())["x-request-id"]


async def test_collect_gives_each_choice_the_text_the_stream_gives(cluster: Cluster) -> None:
    await cluster.add_worker(SimBackend("h100", speed=0), "sim")
    sampling = {"model": SIM_MODEL, "max_tokens": 9, "seed": 7, "n": 2}
    streamed = await collect(cluster.chat(**sampling))
    texts = ["".join(e.delta.text for e in streamed if e.delta.index == i) for i in (0, 1)]
    [collected] = await collect(cluster.chat(collect=True, **sampling))
    assert [(c.index, c.text) for c in collected.completed.choices] == [
        (0, texts[0]),
        (1, texts[1]),
    ]
    assert texts[0] != texts[1]
    finished, expected = collected.completed.finished, streamed[-1].finished
    assert (finished.choices, finished.usage) == (expected.choices, expected.usage)


async def test_unknown_model_fails_fast_with_not_found(cluster: Cluster) -> None:
    await cluster.add_worker(ScriptedBackend(), "w1")
    with pytest.raises(grpc.aio.AioRpcError) as err:  # queued, it would wait 300 s
        await asyncio.wait_for(collect(cluster.chat(model="no-such-model")), 10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_model_whose_workers_left_fails_fast_with_unavailable(cluster: Cluster) -> None:
    agent = await cluster.add_worker(ScriptedBackend(), "w1")
    agent.drain()
    await until(lambda: cluster.worker("w1") is None)
    with pytest.raises(grpc.aio.AioRpcError) as err:  # queued, it would wait 300 s
        await asyncio.wait_for(collect(cluster.chat()), 10)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_a_bad_api_key_is_refused(cluster: Cluster) -> None:
    await cluster.add_worker(ScriptedBackend(), "w1")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await collect(cluster.chat(key="wrong"))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_invalid_sampling_is_refused_with_the_field_named(cluster: Cluster) -> None:
    await cluster.add_worker(ScriptedBackend(), "w1")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await collect(cluster.chat(temperature=7.0))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert ("x-error-param", "temperature") in tuple(err.value.trailing_metadata() or ())


async def test_a_full_queue_refuses_with_retry_after(cluster: Cluster) -> None:
    backend = ScriptedBackend(slots=1)
    backend.gate = asyncio.Event()
    await cluster.add_worker(backend, "w1")
    cluster.core.scheduler.queue.capacity = 8
    calls = [cluster.chat(key=f"key-{i}") for i in range(9)]  # 1 runs, 8 wait
    await until(lambda: len(cluster.core.scheduler.queue) == 8)
    late = cluster.chat(key="key-late")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await collect(late)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    trailing = dict(err.value.trailing_metadata() or ())
    assert "retry-after-ms" in trailing
    assert trailing["x-error-code"] == "queue_full"
    # Admitted, then refused: the answer still names the request and the key.
    assert dict(await late.initial_metadata())["x-key-id"] == "late"
    backend.gate.set()
    for call in calls:
        assert text_of(await collect(call))


async def test_one_key_cannot_fill_the_queue_for_the_others(cluster: Cluster) -> None:
    backend = ScriptedBackend(slots=1)
    backend.gate = asyncio.Event()
    await cluster.add_worker(backend, "w1")
    cluster.core.scheduler.queue.capacity = 8  # a key may hold 8 // 4 = 2 waiting tasks
    calls = [cluster.chat(key="key-flood") for _ in range(3)]  # 1 runs, 2 wait
    await until(lambda: len(cluster.core.scheduler.queue) == 2)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await collect(cluster.chat(key="key-flood"))
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert dict(err.value.trailing_metadata() or ())["x-error-code"] == "too_many_queued_requests"
    other = cluster.chat(key="key-other")  # still room for another key
    await until(lambda: len(cluster.core.scheduler.queue) == 3)
    backend.gate.set()
    for call in [*calls, other]:
        assert text_of(await collect(call))


async def test_queued_callers_hear_their_position(cluster: Cluster) -> None:
    backend = ScriptedBackend(slots=1)
    backend.gate = asyncio.Event()
    await cluster.add_worker(backend, "w1")
    first = cluster.chat()
    await until(lambda: backend.started)
    second = cluster.chat()
    event = await second.read()
    assert event.WhichOneof("event") == "queued" and event.queued.position == 0
    backend.gate.set()
    await collect(first)
    rest = []
    while (event := await second.read()) is not grpc.aio.EOF:
        rest.append(event)
    assert text_of(rest)


async def test_priority_and_fair_share_decide_the_order(cluster: Cluster) -> None:
    backend = ScriptedBackend(slots=1, tokens=1)
    backend.gate = asyncio.Event()
    await cluster.add_worker(backend, "w1")
    blocker = cluster.chat(key="key-x")
    await until(lambda: backend.started)
    order: list[str] = []

    async def run(key: str, label: str) -> None:
        await collect(cluster.chat(key=key))
        order.append(label)

    runs: list[asyncio.Task[None]] = []
    arrivals = [("flood1", "key-f"), ("flood2", "key-f"), ("flood3", "key-f")]
    arrivals += [("other", "key-o"), ("low", "key-l-p1"), ("high", "key-h-p9")]
    for label, key in arrivals:  # one at a time, so arrival order is known
        runs.append(asyncio.create_task(run(key, label)))
        queued = len(runs)
        await until(lambda queued=queued: len(cluster.core.scheduler.queue) == queued)
    backend.gate.set()
    await collect(blocker)
    await asyncio.gather(*runs)
    # Highest priority first; "other" is not stuck behind the flood; FIFO within the flood;
    # the low-priority task is last.
    assert order[0] == "high"
    assert order.index("other") <= 2
    assert [x for x in order if x.startswith("flood")] == ["flood1", "flood2", "flood3"]
    assert order[-1] == "low"


async def test_tasks_spread_to_the_least_loaded_worker_fast_first(cluster: Cluster) -> None:
    slow, fast = ScriptedBackend(slots=4, speed=10), ScriptedBackend(slots=4, speed=50)
    for b in (slow, fast):
        b.gate = asyncio.Event()
    await cluster.add_worker(slow, "slow")
    await cluster.add_worker(fast, "fast")
    calls = [cluster.chat()]
    await until(lambda: fast.started)
    assert not slow.started  # equal load: the faster GPU wins the tie
    calls += [cluster.chat() for _ in range(5)]
    await until(lambda: len(slow.started) + len(fast.started) == 6)
    assert (len(fast.started), len(slow.started)) == (3, 3)
    for b in (slow, fast):
        b.gate.set()
    for call in calls:
        await collect(call)
    s = cluster.core.scheduler
    assert s.running == 0 and not any(w.active for w in s.registry)


async def test_list_models_reports_served_models(cluster: Cluster) -> None:
    await cluster.add_worker(ScriptedBackend(models=("m1", "m2")), "w1")
    await cluster.add_worker(ScriptedBackend(models=("m2",)), "w2")
    reply = await cluster.stub.ListModels(
        scheduler_pb2.ListModelsRequest(), metadata=(("authorization", "Bearer key-a"),)
    )
    assert {(m.id, m.workers) for m in reply.models} == {("m1", 1), ("m2", 2)}
    assert MODEL not in {m.id for m in reply.models}


async def test_a_queued_caller_hears_its_new_position_when_the_task_ahead_leaves(
    cluster: Cluster,
) -> None:
    backend = ScriptedBackend(slots=1, tokens=1)
    backend.gate = asyncio.Event()
    await cluster.add_worker(backend, "w1")
    running = cluster.chat()
    await until(lambda: backend.started)
    ahead = cluster.chat()
    assert (await asyncio.wait_for(ahead.read(), 10)).queued.position == 0
    behind = cluster.chat()
    heard = await asyncio.wait_for(behind.read(), 10)
    assert heard.WhichOneof("event") == "queued" and heard.queued.position == 1
    # Nothing polls: only the queue's change notification can bring the news.
    ahead.cancel()
    heard = await asyncio.wait_for(behind.read(), 10)
    assert heard.WhichOneof("event") == "queued" and heard.queued.position == 0
    # A task joining behind it leaves its position alone, so it hears nothing until it starts.
    later = cluster.chat()
    assert (await asyncio.wait_for(later.read(), 10)).queued.position == 1
    backend.gate.set()
    heard = await asyncio.wait_for(behind.read(), 10)
    assert heard.WhichOneof("event") == "started"
    for call in (running, behind, later):
        await collect(call)
