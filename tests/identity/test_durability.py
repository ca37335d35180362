"""SQLite in WAL mode with synchronous=NORMAL: a kill -9 loses no acknowledged write."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from gpucloud_server.config import CoreSettings
from gpucloud_server.identity.storage import open_database
from gpucloud_server.identity.storage.tables import api_keys, usage

HERE = Path(__file__).parent


@pytest.mark.slow
async def test_sqlite_kill_9_loses_no_acknowledged_write(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(HERE / "durability_proc.py"), str(tmp_path), stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    acked_tasks: set[str] = set()
    acked_keys: set[str] = set()
    try:
        assert (await asyncio.wait_for(proc.stdout.readline(), 30)).strip() == b"ready"
        while len(acked_keys) < 60:
            kind, *ids = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().split()
            (acked_tasks if kind == "usage" else acked_keys).update(ids)
        os.kill(proc.pid, signal.SIGKILL)  # mid-stream, no chance to clean up
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
    # -9; or 255 when asyncio's child watcher lost the race to reap it ("unknown child").
    # Never 0: the writer loops until killed.
    assert proc.returncode in (-signal.SIGKILL, 255)

    db = open_database(CoreSettings(data_dir=tmp_path))
    try:
        async with db.read() as conn:
            tasks = set((await conn.execute(sa.select(usage.c.task_id))).scalars())
            keys = set((await conn.execute(sa.select(api_keys.c.id))).scalars())
    finally:
        await db.close()
    assert acked_tasks <= tasks
    assert acked_keys <= keys
    assert len(acked_tasks) >= 300
