"""Helpers for the identity tests (imported as `identity_helpers`; conftest holds fixtures)."""

from __future__ import annotations

import secrets
from pathlib import Path

from argon2 import PasswordHasher

from gpucloud_server.config import CoreSettings
from gpucloud_server.identity.assembly import Identity
from gpucloud_server.identity.users import ROLE_MEMBER
from gpucloud_server.principal import UsageRecord, UserPrincipal

# argon2id still, but cheap: tests hash hundreds of passwords on two cores.
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
ADMIN_EMAIL = "admin@gpucloud.local"
ADMIN_PASSWORD = "admin123"


def make_settings(data_dir: Path, database_url: str | None, **overrides: object) -> CoreSettings:
    values: dict[str, object] = {
        "data_dir": data_dir,
        "database_url": database_url,
        "usage_flush_interval_s": 0.05,
        # Each test its own Redis namespace: runs never share limits or channels.
        "redis_namespace": f"gpucloud-test-{secrets.token_hex(4)}",
    }
    values.update(overrides)
    return CoreSettings(**values)  # type: ignore[arg-type]


async def admin_of(identity: Identity) -> UserPrincipal:
    user = await identity.users.authenticate(ADMIN_EMAIL, ADMIN_PASSWORD)
    assert user is not None
    return user.principal()


async def new_member(identity: Identity, email: str | None = None) -> UserPrincipal:
    address = email or f"member-{secrets.token_hex(4)}@example.com"
    user = await identity.users.create(address, "member-password", ROLE_MEMBER)
    return user.principal()


def usage_record(task_id: str, **fields: object) -> UsageRecord:
    values: dict[str, object] = {
        "task_id": task_id,
        "key_id": "key-1",
        "user_id": "user-1",
        "model": "llama-3-8b",
        "worker_id": "worker-1",
        "gpu": "H100 80GB",
        "prompt_tokens": 10,
        "completion_tokens": 20,
        "queue_wait_ms": 5,
        "time_to_first_token_ms": 50,
        "total_ms": 500,
        "outcome": "ok",
        "error_code": "",
        "created_at": 1_700_000_000.0,
        "finished_at": 1_700_000_001.0,
    }
    values.update(fields)
    return UsageRecord(**values)  # type: ignore[arg-type]


class ManualClock:
    """A clock that moves only when the test says so."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
