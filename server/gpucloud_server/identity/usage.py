"""The usage sink: one row per task, batched off the hot path, idempotent on task id."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from typing import Any

from sqlalchemy import exc as sa_exc

from gpucloud_server.errors import Unavailable
from gpucloud_server.identity.storage import Database
from gpucloud_server.identity.storage.tables import usage
from gpucloud_server.principal import UsageRecord

log = logging.getLogger(__name__)

BATCH_SIZE = 500
MAX_PENDING = 200_000  # ~100 MB of records while the database is down; then the oldest go
OUTCOMES = frozenset({"ok", "error", "cancelled"})
_INT32 = 2**31 - 1


def _clip(text: str, size: int) -> str:
    return text[:size]


def _count(value: int | None) -> int | None:
    return None if value is None else min(max(int(value), 0), _INT32)


def to_row(record: UsageRecord) -> dict[str, Any]:
    """The record as a usage row, clipped to the column sizes so one odd record
    cannot fail a whole batch."""
    return {
        "task_id": _clip(record.task_id, 64),
        "key_id": _clip(record.key_id, 32),
        "user_id": _clip(record.user_id, 32),
        "model": _clip(record.model, 200),
        "worker_id": _clip(record.worker_id, 64),
        "gpu": _clip(record.gpu, 100),
        "prompt_tokens": _count(record.prompt_tokens),
        "completion_tokens": _count(record.completion_tokens),
        "queue_wait_ms": _count(record.queue_wait_ms),
        "ttft_ms": _count(record.time_to_first_token_ms),
        "total_ms": _count(record.total_ms),
        "outcome": record.outcome if record.outcome in OUTCOMES else "error",
        "error_code": _clip(record.error_code, 64),
        "created_ms": int(record.created_at * 1000),
        "finished_ms": int(record.finished_at * 1000),
    }


class UsageWriter:
    """Implements principal.UsageSink. `record()` only appends to a buffer; a
    background task writes batches every `interval_s` (sooner when a batch is
    full) with INSERT … ON CONFLICT DO NOTHING, so a record written twice (a
    retried flush, a duplicate report) counts once. `close()` flushes the rest."""

    def __init__(self, db: Database, interval_s: float = 1.0) -> None:
        self._db = db
        self._interval_s = interval_s
        self._pending: dict[str, dict[str, Any]] = {}
        self._full = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        return len(self._pending)

    def record(self, record: UsageRecord) -> None:
        row = to_row(record)
        if row["task_id"] in self._pending:
            return  # the first report of a task wins, as in the database
        if len(self._pending) >= MAX_PENDING:
            dropped = next(iter(self._pending))
            del self._pending[dropped]
            log.error("usage buffer full; dropped the record of task %s", dropped)
        self._pending[row["task_id"]] = row
        if len(self._pending) >= BATCH_SIZE:
            self._full.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="usage-writer")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()
        if self._pending:
            log.error("lost %d usage records: the database is unavailable", len(self._pending))

    async def flush(self) -> int:
        """Writes everything pending; returns the rows sent. Records that could not
        be written stay pending (and the error propagates)."""
        async with self._lock:
            sent = 0
            while self._pending:
                batch = dict(itertools.islice(self._pending.items(), BATCH_SIZE))
                await self._write(list(batch.values()))
                for task_id in batch:
                    self._pending.pop(task_id, None)
                sent += len(batch)
            self._full.clear()
            return sent

    async def _write(self, rows: list[dict[str, Any]]) -> None:
        statement = self._db.insert_ignore(usage, "task_id")
        try:
            async with self._db.write() as conn:
                await conn.execute(statement, rows)
        except sa_exc.DBAPIError:
            await self._write_one_by_one(rows)

    async def _write_one_by_one(self, rows: list[dict[str, Any]]) -> None:
        """A batch the database refused (not a connection problem: that raises
        Unavailable): write row by row and drop only the rows it refuses."""
        statement = self._db.insert_ignore(usage, "task_id")
        for row in rows:
            try:
                async with self._db.write() as conn:
                    await conn.execute(statement, row)
            except sa_exc.DBAPIError as error:
                log.error("usage record of task %s refused: %s", row["task_id"], error.orig)

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), self._interval_s)
            try:
                await self.flush()
            except Unavailable:
                log.warning("usage flush deferred: %d records pending", self.pending)
                await asyncio.sleep(self._interval_s)
            except Exception:
                log.exception("usage flush failed; %d records pending", self.pending)
                await asyncio.sleep(self._interval_s)
