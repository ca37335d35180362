"""Per-key requests/min and tokens/min: exact at the boundary, in memory and through Redis."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from redis.asyncio import Redis

from gpucloud_server.errors import ResourceExhausted, Unavailable
from gpucloud_server.identity.limits import KeyRateLimiter
from gpucloud_server.identity.local_limits import LocalRateLimiter
from gpucloud_server.principal import KeyPrincipal, RateLimiter

HERE = Path(__file__).parent


def _key(rpm: int = 60, tpm: int = 0) -> KeyPrincipal:
    return KeyPrincipal(secrets.token_hex(8), "user", "k", 5, frozenset(), rpm, tpm)


def _redis_storage(redis: Redis, url: str, namespace: str) -> RedisStorage:
    return RedisStorage(
        "async+" + url,
        wrap_exceptions=True,
        implementation="redispy",
        key_prefix=f"{namespace}:limits",
        connection_pool=redis.connection_pool,  # type: ignore[arg-type]
    )


@pytest.fixture(
    params=[
        pytest.param("local", id="local"),
        pytest.param("memory", id="memory"),
        pytest.param("redis", id="redis", marks=pytest.mark.services),
    ]
)
async def storage(request: pytest.FixtureRequest) -> AsyncIterator[Storage | None]:
    if request.param == "local":
        yield None  # the single-core limiter keeps its own state
        return
    if request.param == "memory":
        memory = MemoryStorage(wrap_exceptions=True)
        yield memory
        if memory.timer is not None:
            memory.timer.cancel()
        return
    url: str = request.getfixturevalue("redis_url")
    redis = Redis.from_url(url)
    yield _redis_storage(redis, url, f"gpucloud-test-{secrets.token_hex(4)}")
    await redis.aclose()


@pytest.fixture
def limiter(storage: Storage | None) -> RateLimiter:
    if storage is None:
        return LocalRateLimiter()
    return KeyRateLimiter(storage, f"gpucloud-test-{secrets.token_hex(4)}")


async def test_a_60_per_minute_key_admits_60_not_61(limiter: RateLimiter) -> None:
    key = _key(rpm=60)
    remaining = []
    for _ in range(60):
        decision = await limiter.admit(key)
        assert decision.requests is not None
        remaining.append(decision.requests.remaining)
    assert remaining == list(range(59, -1, -1))
    with pytest.raises(ResourceExhausted) as refused:
        await limiter.admit(key)
    error = refused.value
    assert error.retry_after_s is not None
    assert 50 < error.retry_after_s <= 60
    assert error.headers["x-ratelimit-limit-requests"] == "60"
    assert error.headers["x-ratelimit-remaining-requests"] == "0"
    assert error.headers["x-ratelimit-reset-requests"].endswith("s")
    # Refusals do not count: still refused, not pushed further out.
    with pytest.raises(ResourceExhausted):
        await limiter.admit(key)


async def test_keys_are_limited_independently(limiter: RateLimiter) -> None:
    first, second = _key(rpm=1), _key(rpm=1)
    await limiter.admit(first)
    await limiter.admit(second)
    with pytest.raises(ResourceExhausted):
        await limiter.admit(first)


async def test_decisions_carry_both_windows_for_the_headers(limiter: RateLimiter) -> None:
    decision = await limiter.admit(_key(rpm=10, tpm=1000))
    headers = decision.headers()
    assert headers["x-ratelimit-limit-requests"] == "10"
    assert headers["x-ratelimit-remaining-requests"] == "9"
    assert headers["x-ratelimit-limit-tokens"] == "1000"
    assert headers["x-ratelimit-remaining-tokens"] == "1000"


async def test_peeking_reports_the_windows_and_counts_nothing(limiter: RateLimiter) -> None:
    key = _key(rpm=2, tpm=1000)
    fresh = (await limiter.peek(key)).headers()
    assert fresh["x-ratelimit-remaining-requests"] == "2"
    assert fresh["x-ratelimit-remaining-tokens"] == "1000"
    await limiter.admit(key)
    await limiter.charge_tokens(key, 300)
    for _ in range(3):
        seen = (await limiter.peek(key)).headers()
        assert seen["x-ratelimit-remaining-requests"] == "1"
        assert seen["x-ratelimit-remaining-tokens"] == "700"
    await limiter.admit(key)  # the peeks took nothing: the second request still fits
    with pytest.raises(ResourceExhausted):
        await limiter.admit(key)


async def test_tokens_spent_past_the_budget_block_until_the_window_resets(
    limiter: RateLimiter,
) -> None:
    key = _key(rpm=100, tpm=1000)
    await limiter.admit(key)
    await limiter.charge_tokens(key, 600)
    decision = await limiter.admit(key)
    assert decision.tokens is not None
    assert decision.tokens.remaining == 400
    await limiter.charge_tokens(key, 600)  # lands although it overshoots
    with pytest.raises(ResourceExhausted, match="tokens per minute") as refused:
        await limiter.admit(key)
    assert refused.value.headers["x-ratelimit-remaining-tokens"] == "0"
    assert refused.value.retry_after_s is not None
    assert 0 < refused.value.retry_after_s <= 60


async def test_zero_means_unlimited(limiter: RateLimiter) -> None:
    key = _key(rpm=0, tpm=0)
    for _ in range(200):
        decision = await limiter.admit(key)
    await limiter.charge_tokens(key, 10**9)
    assert decision.requests is None
    assert decision.tokens is None
    assert decision.headers() == {}


async def test_an_unreachable_redis_is_unavailable_not_a_crash() -> None:
    redis = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    limiter = KeyRateLimiter(_redis_storage(redis, "redis://127.0.0.1:1/0", "x"), "x")
    try:
        with pytest.raises(Unavailable):
            await limiter.admit(_key())
    finally:
        await redis.aclose()


@pytest.mark.services
@pytest.mark.slow
async def test_two_processes_sharing_redis_admit_no_more_than_the_limit(redis_url: str) -> None:
    namespace = f"gpucloud-test-{secrets.token_hex(4)}"
    key_id, limit, attempts = secrets.token_hex(8), 200, 250
    args = [redis_url, namespace, key_id, str(limit), str(attempts)]
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            str(HERE / "limiter_proc.py"),
            *args,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
            assert line.strip() == b"ready"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            await proc.stdin.drain()
        outputs = [await asyncio.wait_for(p.communicate(), 30) for p in procs]
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert [p.returncode for p in procs] == [0, 0]
    admitted = [int(out.decode().strip()) for out, _ in outputs]
    assert sum(admitted) == limit, admitted


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_the_local_window_moves_one_admit_at_a_time() -> None:
    clock = Clock()
    limiter = LocalRateLimiter(clock)
    key = _key(rpm=2)
    await limiter.admit(key)
    clock.now += 30
    await limiter.admit(key)
    with pytest.raises(ResourceExhausted) as refused:
        await limiter.admit(key)
    assert refused.value.retry_after_s == pytest.approx(30)
    clock.now += 30  # the first admit leaves the window, the second stays
    decision = await limiter.admit(key)
    assert decision.requests is not None
    assert decision.requests.remaining == 0
    with pytest.raises(ResourceExhausted):
        await limiter.admit(key)


async def test_the_local_token_window_resets_after_a_minute() -> None:
    clock = Clock()
    limiter = LocalRateLimiter(clock)
    key = _key(rpm=0, tpm=100)
    await limiter.charge_tokens(key, 150)
    with pytest.raises(ResourceExhausted):
        await limiter.admit(key)
    clock.now += 60
    decision = await limiter.admit(key)
    assert decision.tokens is not None
    assert decision.tokens.remaining == 100


async def test_the_local_limiter_forgets_idle_keys() -> None:
    clock = Clock()
    limiter = LocalRateLimiter(clock)
    for _ in range(10):
        await limiter.admit(_key(rpm=5))
    clock.now += 61
    active = _key(rpm=5)
    for _ in range(2000):  # enough admits to trigger sweeps
        clock.now += 0.0001
        with contextlib.suppress(ResourceExhausted):
            await limiter.admit(active)
    assert list(limiter._keys) == [active.key_id]
