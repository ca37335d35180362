"""Usage records: batched off the hot path, one row per task, nothing lost on close."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import sqlalchemy as sa
from identity_helpers import FAST_HASHER, make_settings, usage_record

from gpucloud_server.config import CoreSettings
from gpucloud_server.errors import Unavailable
from gpucloud_server.identity import usage as usage_module
from gpucloud_server.identity.assembly import Identity
from gpucloud_server.identity.storage import Database, open_database
from gpucloud_server.identity.storage.tables import usage
from gpucloud_server.identity.usage import UsageWriter


async def _rows(db: Database) -> list[sa.Row[tuple[str, str, int, int]]]:
    query = sa.select(
        usage.c.task_id, usage.c.outcome, usage.c.prompt_tokens, usage.c.completion_tokens
    ).order_by(usage.c.task_id)
    async with db.read() as conn:
        return list((await conn.execute(query)).all())


async def test_a_mixed_run_leaves_one_row_per_task(database: Database) -> None:
    writer = UsageWriter(database, interval_s=0.02)
    await writer.start()
    outcomes = ["ok", "error", "cancelled"]
    for i in range(90):
        outcome = outcomes[i % 3]
        tokens = {"ok": 20, "error": 0, "cancelled": 7}[outcome]  # cancelled: tokens produced
        writer.record(usage_record(f"task-{i:03}", outcome=outcome, completion_tokens=tokens))
        if i % 10 == 0:  # a worker that reports a task twice, or a retried report
            writer.record(usage_record(f"task-{i:03}", outcome="ok", completion_tokens=999))
        await asyncio.sleep(0)
    await asyncio.sleep(0.1)
    for i in range(0, 90, 7):  # a report arriving again after its row was written
        writer.record(usage_record(f"task-{i:03}", outcome="ok", completion_tokens=999))
    await writer.close()
    rows = await _rows(database)
    assert [r.task_id for r in rows] == [f"task-{i:03}" for i in range(90)]
    assert [r.outcome for r in rows] == [outcomes[i % 3] for i in range(90)]
    assert sum(r.completion_tokens for r in rows) == 30 * 20 + 30 * 7


async def test_record_only_buffers_and_close_flushes(database: Database) -> None:
    writer = UsageWriter(database, interval_s=3600)
    await writer.start()
    for i in range(1234):  # more than two batches
        writer.record(usage_record(f"t{i}"))
    assert writer.pending >= 1234 - 2 * usage_module.BATCH_SIZE
    await writer.close()
    assert writer.pending == 0
    assert len(await _rows(database)) == 1234


async def test_two_cores_writing_the_same_task_count_it_once(database: Database) -> None:
    first, second = UsageWriter(database), UsageWriter(database)
    for writer in (first, second):
        writer.record(usage_record("shared", completion_tokens=5))
        writer.record(usage_record("own-" + str(id(writer))))
    await asyncio.gather(first.flush(), second.flush())
    rows = await _rows(database)
    assert len(rows) == 3
    assert [r.completion_tokens for r in rows if r.task_id == "shared"] == [5]


async def test_odd_records_are_clipped_not_lost(database: Database) -> None:
    writer = UsageWriter(database)
    writer.record(
        usage_record(
            "odd",
            model="m" * 500,
            gpu="g" * 500,
            error_code="E" * 500,
            prompt_tokens=-5,
            completion_tokens=2**40,
            outcome="weird",
        )
    )
    writer.record(usage_record("normal"))
    await writer.flush()
    rows = {r.task_id: r for r in await _rows(database)}
    assert set(rows) == {"odd", "normal"}
    assert rows["odd"].outcome == "error"
    assert rows["odd"].prompt_tokens == 0
    assert rows["odd"].completion_tokens == 2**31 - 1


async def test_records_wait_while_the_database_is_down(tmp_path: Path) -> None:
    down = open_database(make_settings(tmp_path, "postgresql://postgres@127.0.0.1:1/x"))
    writer = UsageWriter(down)
    writer.record(usage_record("kept"))
    with pytest.raises(Unavailable):
        await writer.flush()
    assert writer.pending == 1
    await down.close()


async def test_identity_close_flushes_usage(settings: CoreSettings) -> None:
    identity = Identity(settings, password_hasher=FAST_HASHER)
    await identity.start()
    identity.usage.record(usage_record("flushed-on-close"))
    await identity.close()
    db = open_database(settings)
    try:
        assert [r.task_id for r in await _rows(db)] == ["flushed-on-close"]
    finally:
        await db.close()
