"""Usage aggregates for the dashboard and MonitorService.GetMetrics, as plain dataclasses."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from gpucloud_server.errors import InvalidArgument
from gpucloud_server.identity.storage import Database
from gpucloud_server.identity.storage.tables import api_keys, usage
from gpucloud_server.principal import UserPrincipal

DEFAULT_WINDOW_MINUTES = 60
DEFAULT_BUCKET_SECONDS = 60
LATENCY_SAMPLE = 20_000  # percentiles over at most the newest this many tasks
MAX_SLICES = 100


@dataclass(frozen=True, slots=True)
class Bucket:
    start: float  # unix seconds
    requests: int
    tokens: int
    errors: int


@dataclass(frozen=True, slots=True)
class Slice:
    id: str
    label: str
    requests: int
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True, slots=True)
class Percentiles:
    p50: float
    p90: float
    p99: float


@dataclass(frozen=True, slots=True)
class MetricsReport:
    buckets: tuple[Bucket, ...]
    by_model: tuple[Slice, ...]
    by_key: tuple[Slice, ...]
    time_to_first_token: Percentiles
    total_time: Percentiles


def percentile(ordered: Sequence[int], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); 0 when empty."""
    if not ordered:
        return 0.0
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (position - low))


def percentiles(values: Sequence[int]) -> Percentiles:
    ordered = sorted(values)
    return Percentiles(
        percentile(ordered, 0.5), percentile(ordered, 0.9), percentile(ordered, 0.99)
    )


def _bounded(value: int, default: int, low: int, high: int, what: str) -> int:
    if value == 0:
        return default
    if not low <= value <= high:
        raise InvalidArgument(f"{what} must be {low} to {high} (0 means {default})")
    return value


class UsageMetrics:
    """Reads the usage table; members see every bucket and model but only their own keys."""

    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock

    async def report(
        self, viewer: UserPrincipal, window_minutes: int = 0, bucket_seconds: int = 0
    ) -> MetricsReport:
        window_s = 60 * _bounded(window_minutes, DEFAULT_WINDOW_MINUTES, 1, 1440, "window_minutes")
        bucket_s = _bounded(bucket_seconds, DEFAULT_BUCKET_SECONDS, 10, 3600, "bucket_seconds")
        now_ms = int(self._clock() * 1000)
        first_ms = (now_ms - window_s * 1000) // (bucket_s * 1000) * (bucket_s * 1000)
        since = usage.c.finished_ms >= first_ms
        async with self._db.read() as conn:
            buckets = await self._buckets(conn, since, first_ms, now_ms, bucket_s * 1000)
            by_model = await self._by_model(conn, since)
            by_key = await self._by_key(conn, since, viewer)
            ttft, total = await self._latencies(conn, since)
        return MetricsReport(buckets, by_model, by_key, percentiles(ttft), percentiles(total))

    async def _buckets(
        self, conn: Any, since: Any, first_ms: int, now_ms: int, bucket_ms: int
    ) -> tuple[Bucket, ...]:
        index = (usage.c.finished_ms // bucket_ms).label("bucket")
        query = (
            sa.select(
                index,
                sa.func.count(),
                sa.func.sum(usage.c.prompt_tokens + usage.c.completion_tokens),
                sa.func.sum(sa.case((usage.c.outcome == "error", 1), else_=0)),
            )
            .where(since)
            .group_by(index)
        )
        found = {int(r[0]): r for r in (await conn.execute(query)).all()}
        out: list[Bucket] = []
        for i in range(first_ms // bucket_ms, now_ms // bucket_ms + 1):
            r = found.get(i)
            requests, tokens, errors = (
                (int(r[1]), int(r[2] or 0), int(r[3] or 0)) if r else (0, 0, 0)
            )
            out.append(Bucket(i * bucket_ms / 1000, requests, tokens, errors))
        return tuple(out)

    async def _by_model(self, conn: Any, since: Any) -> tuple[Slice, ...]:
        requests = sa.func.count()
        query = (
            sa.select(
                usage.c.model,
                requests,
                sa.func.sum(usage.c.prompt_tokens),
                sa.func.sum(usage.c.completion_tokens),
            )
            .where(since)
            .group_by(usage.c.model)
            .order_by(requests.desc(), usage.c.model)
            .limit(MAX_SLICES)
        )
        rows = (await conn.execute(query)).all()
        return tuple(Slice(r[0], r[0], int(r[1]), int(r[2] or 0), int(r[3] or 0)) for r in rows)

    async def _by_key(self, conn: Any, since: Any, viewer: UserPrincipal) -> tuple[Slice, ...]:
        requests = sa.func.count()
        query = (
            sa.select(
                usage.c.key_id,
                sa.func.max(api_keys.c.name),
                requests,
                sa.func.sum(usage.c.prompt_tokens),
                sa.func.sum(usage.c.completion_tokens),
            )
            .select_from(usage.outerjoin(api_keys, api_keys.c.id == usage.c.key_id))
            .where(since)
            .group_by(usage.c.key_id)
            .order_by(requests.desc(), usage.c.key_id)
            .limit(MAX_SLICES)
        )
        if not viewer.is_admin:
            query = query.where(usage.c.user_id == viewer.user_id)
        rows = (await conn.execute(query)).all()
        return tuple(
            Slice(r[0], r[1] or r[0], int(r[2]), int(r[3] or 0), int(r[4] or 0)) for r in rows
        )

    async def _latencies(self, conn: Any, since: Any) -> tuple[list[int], list[int]]:
        query = (
            sa.select(usage.c.ttft_ms, usage.c.total_ms)
            .where(since, usage.c.outcome == "ok")
            .order_by(usage.c.finished_ms.desc())
            .limit(LATENCY_SAMPLE)
        )
        rows = (await conn.execute(query)).all()
        return [int(r[0]) for r in rows if r[0] is not None], [int(r[1]) for r in rows]
