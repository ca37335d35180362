"""Run by test_durability: writes to SQLite and reports each acknowledged write, until killed.

usage: python durability_proc.py DATA_DIR
Prints "usage <task ids…>" after each flushed batch and "key <key id>" after each
created key, forever; the test SIGKILLs it mid-stream.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
from pathlib import Path

from argon2 import PasswordHasher

from gpucloud_server.config import CoreSettings
from gpucloud_server.identity.assembly import Identity
from gpucloud_server.identity.keyspec import KeySpec
from gpucloud_server.principal import UsageRecord


def _record(task_id: str) -> UsageRecord:
    now = time.time()
    return UsageRecord(
        task_id, "key", "user", "model", "worker", "gpu", 1, 2, 0, 1, 3, "ok", "", now, now
    )


async def main(data_dir: str) -> None:
    settings = CoreSettings(data_dir=Path(data_dir), usage_flush_interval_s=3600)
    hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    identity = Identity(settings, password_hasher=hasher)
    await identity.start()
    admin = await identity.users.authenticate(settings.admin_email, settings.admin_password)
    assert admin is not None
    print("ready", flush=True)
    for batch in itertools.count():
        ids = [f"task-{batch}-{i}" for i in range(5)]
        for task_id in ids:
            identity.usage.record(_record(task_id))
        await identity.usage.flush()
        print("usage", *ids, flush=True)
        created = await identity.keys.create(admin.principal(), KeySpec(name=f"k{batch}"))
        print("key", created.key.id, flush=True)
        if batch % 90 == 89:  # stay under the active-key bound
            for key in await identity.keys.list(admin.principal()):
                if key.revoked_at is None:
                    await identity.keys.revoke(admin.principal(), key.id)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
