"""The core process: gRPC server, scheduler, identity; startup, serve, graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Protocol

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from gpucloud.v1 import (
    auth_pb2,
    auth_pb2_grpc,
    monitor_pb2,
    monitor_pb2_grpc,
    scheduler_pb2,
    scheduler_pb2_grpc,
)
from gpucloud_server.config import CoreSettings
from gpucloud_server.identity.assembly import Accounts, Identity
from gpucloud_server.interceptor import ErrorInterceptor
from gpucloud_server.principal import (
    KeyAuthority,
    RateLimiter,
    SessionAuthority,
    UsageRecord,
    UsageSink,
)
from gpucloud_server.scheduling.registry import WorkerState
from gpucloud_server.scheduling.scheduler import Scheduler, SchedulerConfig
from gpucloud_server.scheduling.tasks import TaskSpec
from gpucloud_server.servicers.auth import AuthServicer
from gpucloud_server.servicers.monitor import MonitorServicer, UsageReports
from gpucloud_server.servicers.scheduler import SchedulerServicer

log = logging.getLogger("gpucloud.core")

SERVICES = (
    scheduler_pb2.DESCRIPTOR.services_by_name["SchedulerService"].full_name,
    monitor_pb2.DESCRIPTOR.services_by_name["MonitorService"].full_name,
    auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name,
)
REAP_INTERVAL_S = 1.0
MAX_MESSAGE_BYTES = 8 * 1024 * 1024


def scheduler_config(settings: CoreSettings) -> SchedulerConfig:
    return SchedulerConfig(
        queue_capacity=settings.queue_capacity,
        max_queue_wait_s=settings.max_queue_wait_s,
        heartbeat_timeout_s=settings.heartbeat_interval_s * settings.missed_heartbeats,
        ageing_step_s=settings.ageing_step_s,
        max_attempts=settings.max_attempts,
        prefix_aware_dispatch=settings.prefix_aware_dispatch,
    )


class IdentityParts(Protocol):
    """What the core needs of identity (users, keys, limits, usage)."""

    @property
    def keys(self) -> KeyAuthority:
        """Authenticates API keys."""

    @property
    def sessions(self) -> SessionAuthority:
        """Verifies dashboard JWTs."""

    @property
    def limiter(self) -> RateLimiter:
        """Per-key rate limits."""

    @property
    def usage(self) -> UsageSink:
        """Where usage records go."""

    @property
    def reports(self) -> UsageReports:
        """Usage aggregates for MonitorService."""

    @property
    def accounts(self) -> Accounts | None:
        """What AuthService serves (after start()); None serves no AuthService."""

    async def start(self) -> None:
        """Opens storage and applies migrations."""

    async def close(self) -> None:
        """Flushes usage and closes storage."""


class CoreServer:
    def __init__(self, settings: CoreSettings, identity: IdentityParts | None = None) -> None:
        self.settings = settings
        self.identity: IdentityParts = identity if identity is not None else Identity(settings)
        self.scheduler = Scheduler(scheduler_config(settings), self._account)
        self.health = health.aio.HealthServicer()
        self.port = 0
        self._server: grpc.aio.Server | None = None
        self._background: list[asyncio.Task[None]] = []
        self._charges: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self.settings.check()
        await self.identity.start()
        server = grpc.aio.server(
            interceptors=[ErrorInterceptor()],
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.keepalive_time_ms", 20_000),
                ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
                ("grpc.keepalive_permit_without_calls", 1),
            ],
        )
        scheduler_pb2_grpc.add_SchedulerServiceServicer_to_server(
            SchedulerServicer(
                self.scheduler,
                self.identity.keys,
                self.identity.limiter,
                self.settings.join_token,
                self.settings.heartbeat_interval_s,
            ),
            server,
        )
        monitor_pb2_grpc.add_MonitorServiceServicer_to_server(
            MonitorServicer(
                self.scheduler,
                self.identity.sessions,
                self.identity.reports,
                self.settings.ops_token,
            ),
            server,
        )
        accounts = self.identity.accounts
        if accounts is not None:
            auth = AuthServicer(accounts, self.settings.trusted_proxies)
            auth_pb2_grpc.add_AuthServiceServicer_to_server(auth, server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (*SERVICES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        cert, key = self.settings.tls_cert, self.settings.tls_key
        if cert is not None and key is not None:
            credentials = grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())])
            self.port = server.add_secure_port(self.settings.grpc_address, credentials)
        else:
            self.port = server.add_insecure_port(self.settings.grpc_address)
        await server.start()
        self._server = server
        for name in ("", *SERVICES):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self._background = [
            asyncio.create_task(self._reap()),
            asyncio.create_task(self._follow_workers()),
        ]
        log.info("core listening", extra={"address": f"{self.settings.grpc_host}:{self.port}"})
        return self.port

    async def wait(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()

    async def stop(self, grace: float | None = None) -> None:
        """Stops taking tasks, lets running ones finish within `grace`, then flushes usage."""
        grace = self.settings.shutdown_grace_s if grace is None else grace
        self.scheduler.close()
        await self.health.enter_graceful_shutdown()
        deadline = time.monotonic() + grace
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.scheduler.idle.wait(), grace)
        self.scheduler.end_sessions()
        if self._server is not None:
            await self._server.stop(max(0.0, min(1.0, deadline - time.monotonic())))
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self._charges:
            await asyncio.gather(*self._charges, return_exceptions=True)
        await self.identity.close()

    async def _reap(self) -> None:
        while True:
            await asyncio.sleep(REAP_INTERVAL_S)
            self.scheduler.reap()

    async def _follow_workers(self) -> None:
        """SchedulerService reports SERVING only while a worker is online (for /readyz)."""
        serving = health_pb2.HealthCheckResponse.SERVING
        last = None
        with self.scheduler.events.subscribe() as events:
            while True:
                online = any(w.state is WorkerState.ONLINE for w in self.scheduler.registry)
                status = serving if online else health_pb2.HealthCheckResponse.NOT_SERVING
                if status != last and not self.scheduler.closing:
                    await self.health.set(SERVICES[0], status)  # on change, not every beat
                    last = status
                await events.get()

    def _account(self, spec: TaskSpec, record: UsageRecord) -> None:
        """One finished task: a log line, its usage record, its tokens against the key."""
        log.info(
            "task %s",
            record.outcome,
            extra={
                "request_id": spec.request_id,
                "task_id": record.task_id,
                "key_id": record.key_id,
                "model": record.model,
                "worker": record.worker_id,
                "status": record.error_code or "OK",
                "queue_ms": record.queue_wait_ms,
                "ttft_ms": record.time_to_first_token_ms,
                "total_ms": record.total_ms,
                "tokens": record.prompt_tokens + record.completion_tokens,
            },
        )
        self.identity.usage.record(record)
        key = spec.key
        tokens = record.prompt_tokens + record.completion_tokens
        if key.tokens_per_minute and tokens:
            charge = asyncio.create_task(self.identity.limiter.charge_tokens(key, tokens))
            self._charges.add(charge)
            charge.add_done_callback(self._charges.discard)
