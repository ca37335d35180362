"""Usage aggregates for GetMetrics: buckets, per model, per key (scoped), latency percentiles."""

from __future__ import annotations

import pytest
from identity_helpers import new_member, usage_record

from gpucloud_server.errors import InvalidArgument
from gpucloud_server.identity.assembly import Identity
from gpucloud_server.identity.keyspec import KeySpec
from gpucloud_server.identity.metrics import UsageMetrics, percentile
from gpucloud_server.identity.usage import UsageWriter
from gpucloud_server.principal import UserPrincipal
from gpucloud_server.servicers.metrics import metrics_response

NOW = 1_800_000_000.0  # a bucket boundary for 60 s buckets


def test_percentiles_interpolate_between_ranks() -> None:
    values = list(range(1, 101))
    assert percentile(values, 0.5) == pytest.approx(50.5)
    assert percentile(values, 0.9) == pytest.approx(90.1)
    assert percentile(values, 0.99) == pytest.approx(99.01)
    assert percentile([], 0.5) == 0.0
    assert percentile([7], 0.99) == 7.0


async def _seed(identity: Identity, admin: UserPrincipal) -> tuple[UserPrincipal, str, str]:
    alice = await new_member(identity, "alice@example.com")
    alice_key = (await identity.keys.create(alice, KeySpec(name="alice key"))).key.id
    admin_key = (await identity.keys.create(admin, KeySpec(name="admin key"))).key.id
    writer = UsageWriter(identity.database)
    for i in range(100):  # alice: 100 ok tasks on model a, one per 6 s over the last 10 min
        writer.record(
            usage_record(
                f"a{i}",
                key_id=alice_key,
                user_id=alice.user_id,
                model="model-a",
                prompt_tokens=3,
                completion_tokens=7,
                time_to_first_token_ms=i + 1,
                total_ms=10 * (i + 1),
                finished_at=NOW - 600 + 6 * i,
            )
        )
    for i in range(10):  # admin: 10 errors on model b in the last minute
        writer.record(
            usage_record(
                f"b{i}",
                key_id=admin_key,
                user_id=admin.user_id,
                model="model-b",
                prompt_tokens=5,
                completion_tokens=0,
                time_to_first_token_ms=None,
                outcome="error",
                finished_at=NOW - 30,
            )
        )
    writer.record(usage_record("old", key_id=admin_key, finished_at=NOW - 7200))
    await writer.flush()
    return alice, alice_key, admin_key


async def test_aggregates_over_the_window(identity: Identity, admin: UserPrincipal) -> None:
    _, alice_key, admin_key = await _seed(identity, admin)
    metrics = UsageMetrics(identity.database, clock=lambda: NOW)
    report = await metrics.report(admin, window_minutes=15, bucket_seconds=60)

    assert len(report.buckets) == 16  # 15 minutes back to the bucket of now
    assert [b.start for b in report.buckets] == [NOW - 900 + 60 * i for i in range(16)]
    assert sum(b.requests for b in report.buckets) == 110
    assert sum(b.tokens for b in report.buckets) == 100 * 10 + 10 * 5
    assert sum(b.errors for b in report.buckets) == 10
    assert report.buckets[-2].errors == 10  # NOW - 30 falls in the bucket before NOW's

    assert [(s.id, s.requests, s.prompt_tokens, s.completion_tokens) for s in report.by_model] == [
        ("model-a", 100, 300, 700),
        ("model-b", 10, 50, 0),
    ]
    assert [(s.id, s.label, s.requests) for s in report.by_key] == [
        (alice_key, "alice key", 100),
        (admin_key, "admin key", 10),
    ]
    # Percentiles over ok tasks only: ttft 1..100 ms, total 10..1000 ms.
    assert report.time_to_first_token.p50 == pytest.approx(50.5)
    assert report.time_to_first_token.p99 == pytest.approx(99.01)
    assert report.total_time.p90 == pytest.approx(901.0)


async def test_members_see_only_their_own_keys(identity: Identity, admin: UserPrincipal) -> None:
    alice, alice_key, _ = await _seed(identity, admin)
    metrics = UsageMetrics(identity.database, clock=lambda: NOW)
    report = await metrics.report(alice, window_minutes=60, bucket_seconds=300)
    assert [s.id for s in report.by_key] == [alice_key]
    assert sum(b.requests for b in report.buckets) == 110  # cluster-wide charts stay visible


async def test_an_empty_window_reads_as_zeros(identity: Identity, admin: UserPrincipal) -> None:
    report = await UsageMetrics(identity.database, clock=lambda: NOW).report(admin)
    assert len(report.buckets) == 61
    assert all(b.requests == b.tokens == b.errors == 0 for b in report.buckets)
    assert report.by_model == report.by_key == ()
    assert report.total_time.p50 == 0.0


@pytest.mark.parametrize(("window", "bucket"), [(1441, 60), (-1, 60), (60, 9), (60, 3601)])
async def test_windows_and_buckets_are_bounded(
    identity: Identity, admin: UserPrincipal, window: int, bucket: int
) -> None:
    with pytest.raises(InvalidArgument):
        await identity.reports.report(admin, window, bucket)


async def test_the_proto_face_carries_the_report(identity: Identity, admin: UserPrincipal) -> None:
    _, alice_key, _ = await _seed(identity, admin)
    report = await UsageMetrics(identity.database, clock=lambda: NOW).report(admin, 15, 60)
    response = metrics_response(report)
    assert [s.id for s in response.by_model] == ["model-a", "model-b"]
    assert response.by_key[0].id == alice_key
    assert response.by_key[0].label == "alice key"
    assert len(response.buckets) == 16
    assert response.buckets[0].start.seconds == NOW - 900
    assert sum(b.errors for b in response.buckets) == 10
    assert response.time_to_first_token.p50 == pytest.approx(50.5)
    assert response.total_time.p90 == pytest.approx(901.0)
