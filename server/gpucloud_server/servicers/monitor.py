"""MonitorService: workers, queue, usage metrics and the live feed, for signed-in users."""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import AsyncIterator
from typing import Protocol

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from gpucloud.v1 import monitor_pb2, monitor_pb2_grpc, worker_pb2
from gpucloud_server.errors import Unauthenticated
from gpucloud_server.identity.metrics import MetricsReport
from gpucloud_server.principal import SessionAuthority, UserPrincipal
from gpucloud_server.scheduling.registry import Worker, WorkerState
from gpucloud_server.scheduling.scheduler import Scheduler, TaskError
from gpucloud_server.scheduling.stats import cluster_stats
from gpucloud_server.servicers.metadata import AnyContext, bearer_token
from gpucloud_server.servicers.metrics import metrics_response

STATS_INTERVAL_S = 1.0
OPS = UserPrincipal(user_id="ops", email="ops", is_admin=False)
STATES = {
    WorkerState.ONLINE: monitor_pb2.WORKER_STATE_ONLINE,
    WorkerState.DRAINING: monitor_pb2.WORKER_STATE_DRAINING,
    WorkerState.UNHEALTHY: monitor_pb2.WORKER_STATE_UNHEALTHY,
    WorkerState.OFFLINE: monitor_pb2.WORKER_STATE_OFFLINE,
}


class UsageReports(Protocol):
    async def report(
        self, user: UserPrincipal, window_minutes: int, bucket_seconds: int
    ) -> MetricsReport:
        """Usage aggregates the user may see."""


class MonitorServicer(monitor_pb2_grpc.MonitorServiceServicer):
    def __init__(
        self,
        scheduler: Scheduler,
        sessions: SessionAuthority,
        reports: UsageReports,
        ops_token: str | None = None,
    ) -> None:
        self._scheduler = scheduler
        self._sessions = sessions
        self._reports = reports
        self._ops_token = ops_token.encode() if ops_token else None

    def _user(self, context: AnyContext) -> UserPrincipal:
        token = bearer_token(context)
        if token is None:
            raise Unauthenticated("sign in first: send 'authorization: Bearer <token>'")
        if self._ops_token is not None and hmac.compare_digest(token.encode(), self._ops_token):
            return OPS  # read-only: sees the cluster, owns no keys
        return self._sessions.verify(token)

    async def ListWorkers(
        self,
        request: monitor_pb2.ListWorkersRequest,
        context: grpc.aio.ServicerContext[
            monitor_pb2.ListWorkersRequest, monitor_pb2.ListWorkersResponse
        ],
    ) -> monitor_pb2.ListWorkersResponse:
        self._user(context)
        workers = sorted(
            self._scheduler.registry,
            key=lambda w: (w.state is WorkerState.OFFLINE, w.info.name, w.id),
        )
        return monitor_pb2.ListWorkersResponse(workers=[worker_status(w) for w in workers])

    async def GetQueue(
        self,
        request: monitor_pb2.GetQueueRequest,
        context: grpc.aio.ServicerContext[
            monitor_pb2.GetQueueRequest, monitor_pb2.GetQueueResponse
        ],
    ) -> monitor_pb2.GetQueueResponse:
        self._user(context)
        queue = self._scheduler.queue
        now = self._scheduler.clock.monotonic()
        oldest = min((t.enqueued_at for t in queue.tasks()), default=now)
        return monitor_pb2.GetQueueResponse(
            depth=len(queue),
            capacity=queue.capacity,
            by_priority=[
                monitor_pb2.PriorityDepth(priority=p, depth=d)
                for p, d in sorted(queue.depth_by_priority().items(), reverse=True)
            ],
            oldest_wait_ms=int((now - oldest) * 1000),
            recent_waits_ms=list(self._scheduler.recent_waits_ms),
            running=self._scheduler.running,
        )

    async def GetMetrics(
        self,
        request: monitor_pb2.GetMetricsRequest,
        context: grpc.aio.ServicerContext[
            monitor_pb2.GetMetricsRequest, monitor_pb2.GetMetricsResponse
        ],
    ) -> monitor_pb2.GetMetricsResponse:
        user = self._user(context)
        window = min(max(request.window_minutes or 60, 1), 1440)
        bucket = min(max(request.bucket_seconds or 60, 10), 3600)
        return metrics_response(await self._reports.report(user, window, bucket))

    async def Watch(
        self,
        request: monitor_pb2.WatchRequest,
        context: grpc.aio.ServicerContext[monitor_pb2.WatchRequest, monitor_pb2.WatchResponse],
    ) -> AsyncIterator[monitor_pb2.WatchResponse]:
        self._user(context)
        with self._scheduler.events.subscribe() as events:
            for worker in list(self._scheduler.registry):
                yield monitor_pb2.WatchResponse(worker=worker_status(worker))
            next_stats = time.monotonic()
            while True:
                timeout = next_stats - time.monotonic()
                if timeout <= 0:
                    yield monitor_pb2.WatchResponse(stats=self._stats())
                    next_stats = time.monotonic() + STATS_INTERVAL_S
                    continue
                try:
                    item = await asyncio.wait_for(events.get(), timeout)
                except TimeoutError:
                    continue
                yield _event(item)

    def _stats(self) -> monitor_pb2.ClusterStats:
        s = cluster_stats(self._scheduler)
        return monitor_pb2.ClusterStats(
            workers_online=s.workers_online,
            workers_total=s.workers_total,
            queue_depth=s.queue_depth,
            running=s.running,
            requests_per_second=s.requests_per_second,
            tokens_per_second=s.tokens_per_second,
            gpu_utilization_percent=s.gpu_utilization_percent,
            recent_errors=s.recent_errors,
        )


def _timestamp(unix_s: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(int(unix_s * 1e9))
    return stamp


def _event(item: Worker | TaskError) -> monitor_pb2.WatchResponse:
    if isinstance(item, Worker):
        return monitor_pb2.WatchResponse(worker=worker_status(item))
    return monitor_pb2.WatchResponse(
        task_error=monitor_pb2.TaskError(
            task_id=item.task_id,
            model=item.model,
            code=item.code,
            message=item.message,
            time=_timestamp(item.time),
        )
    )


def worker_status(worker: Worker) -> monitor_pb2.WorkerStatus:
    info = worker.info
    return monitor_pb2.WorkerStatus(
        worker_id=info.worker_id,
        name=info.name,
        backend=info.backend,
        state=STATES[worker.state],
        gpus=[
            worker_pb2.GpuSpec(
                name=g.name,
                memory_total_bytes=g.memory_total_bytes,
                memory_bandwidth_gbps=g.memory_bandwidth_gbps,
                bf16_tflops=g.bf16_tflops,
            )
            for g in info.gpus
        ],
        metrics=[
            worker_pb2.GpuMetrics(
                index=r.index,
                utilization_percent=r.utilization_percent,
                memory_used_bytes=r.memory_used_bytes,
                temperature_celsius=r.temperature_celsius,
                power_watts=r.power_watts,
            )
            for r in worker.readings
        ],
        models=[m for m, _ in info.models],
        active_tasks=len(worker.active),
        slots=info.slots,
        last_heartbeat=_timestamp(worker.last_heartbeat),
        connected_at=_timestamp(worker.connected_at),
        status_message=worker.status_message,
        tasks_completed=worker.tasks_completed,
    )
