"""Operations endpoints: /healthz (process up), /readyz (core and a worker), /metrics.

The cluster gauges of /metrics (workers, GPUs, queue) come from MonitorService
at scrape time, with the operations token when one is configured, else with the
scraper's own bearer JWT; without either, /metrics has the gateway's figures only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Literal, NotRequired, TypedDict

import grpc
import orjson
from grpc_health.v1 import health_pb2
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from gpucloud.v1 import monitor_pb2, monitor_pb2_grpc
from gpucloud_gateway.management_json import state_name
from gpucloud_gateway.metadata import Metadata, core_metadata
from gpucloud_gateway.metrics import GatewayMetrics
from gpucloud_gateway.openapi import ApiRoute, Operation

log = logging.getLogger("gpucloud.gateway")

# The health service name whose status says whether the core can run tasks.
SCHEDULER_SERVICE = monitor_pb2.DESCRIPTOR.package + ".SchedulerService"
_PROBE_TIMEOUT_S = 2.0
_HEALTH_CHECK = "/grpc.health.v1.Health/Check"


class Health(TypedDict):
    status: Literal["ok"]


class Readiness(TypedDict):
    """Ready (200) when the core answers and a worker is online; else 503 with the reason."""

    status: Literal["ready", "unavailable"]
    reason: NotRequired[str]
    workersOnline: NotRequired[int]


_HEALTH_DOC = Operation("The process is up", "Operations", "none", Health)
_READY_DOC = Operation(
    "The core answers and a worker is online",
    "Operations",
    "none",
    Readiness,
    also={503: "Not ready: the core is unreachable or no worker is online."},
)
_METRICS_DOC = Operation(
    "Prometheus metrics; cluster gauges with the ops token or the scraper's JWT",
    "Operations",
    "optional_jwt",
    {"type": "string", "description": "The Prometheus text exposition format."},
    media_type="text/plain",
)


def _json(body: Mapping[str, object], status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


class OpsRoutes:
    def __init__(
        self, channel: grpc.aio.Channel, metrics: GatewayMetrics, ops_token: str | None
    ) -> None:
        # Bound by hand: the typed stubs of grpc_health declare no methods on HealthStub.
        self._health_check: grpc.aio.UnaryUnaryMultiCallable[
            health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse
        ] = channel.unary_unary(
            _HEALTH_CHECK,
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        self._monitor = monitor_pb2_grpc.MonitorServiceStub(channel)
        self._metrics = metrics
        self._ops_token = ops_token

    def routes(self) -> list[BaseRoute]:
        return [
            ApiRoute("/healthz", self.healthz, method="GET", doc=_HEALTH_DOC),
            ApiRoute("/readyz", self.readyz, method="GET", doc=_READY_DOC),
            ApiRoute("/metrics", self.prometheus, method="GET", doc=_METRICS_DOC),
        ]

    async def healthz(self, request: Request) -> Response:
        return _json(Health(status="ok"))

    async def _serving(self, service: str) -> bool:
        reply = await self._health_check(
            health_pb2.HealthCheckRequest(service=service), timeout=_PROBE_TIMEOUT_S
        )
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    async def readyz(self, request: Request) -> Response:
        """Ready when the core answers its health check and at least one worker is online."""
        try:
            if not await self._serving(""):
                return _json({"status": "unavailable", "reason": "core is shutting down"}, 503)
            online = await self._workers_online()
        except grpc.aio.AioRpcError as err:
            reason = f"core unreachable: {err.code().name}"
            return _json({"status": "unavailable", "reason": reason}, 503)
        if online == 0:
            return _json({"status": "unavailable", "reason": "no worker online"}, 503)
        body: Readiness = {"status": "ready"}
        if online is not None:
            body["workersOnline"] = online
        return _json(body)

    async def _workers_online(self) -> int | None:
        """Online workers, counted through MonitorService with the ops token; without one,
        the core's health status of SchedulerService says whether there are any (None)."""
        if self._ops_token is None:
            return None if await self._serving(SCHEDULER_SERVICE) else 0
        reply = await self._monitor.ListWorkers(
            monitor_pb2.ListWorkersRequest(),
            metadata=(("authorization", f"Bearer {self._ops_token}"),),
            timeout=_PROBE_TIMEOUT_S,
        )
        return sum(1 for w in reply.workers if w.state == monitor_pb2.WORKER_STATE_ONLINE)

    def _scrape_token(self, request: Request) -> str | None:
        if self._ops_token is not None:
            return self._ops_token
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None

    async def prometheus(self, request: Request) -> Response:
        token = self._scrape_token(request)
        if token is not None:
            await self._refresh_cluster(core_metadata(request, f"Bearer {token}"))
        return Response(self._metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    async def _refresh_cluster(self, metadata: Metadata) -> None:
        try:
            workers, queue = await asyncio.gather(
                self._monitor.ListWorkers(
                    monitor_pb2.ListWorkersRequest(), metadata=metadata, timeout=_PROBE_TIMEOUT_S
                ),
                self._monitor.GetQueue(
                    monitor_pb2.GetQueueRequest(), metadata=metadata, timeout=_PROBE_TIMEOUT_S
                ),
            )
        except grpc.aio.AioRpcError as err:
            log.warning("cluster metrics unavailable", extra={"grpc_code": err.code().name})
            self._metrics.core_up.set(0)
            return
        self._metrics.core_up.set(1)
        set_cluster_gauges(self._metrics, workers, queue)


def set_cluster_gauges(
    m: GatewayMetrics,
    workers: monitor_pb2.ListWorkersResponse,
    queue: monitor_pb2.GetQueueResponse,
) -> None:
    m.queue_depth.set(queue.depth)
    m.queue_capacity.set(queue.capacity)
    m.running.set(queue.running)
    m.oldest_wait.set(queue.oldest_wait_ms / 1000.0)
    by_state = dict.fromkeys(("online", "draining", "unhealthy", "offline"), 0)
    for gauge in (m.gpu_util, m.gpu_mem_used, m.gpu_mem_total, m.worker_tasks):
        gauge.clear()  # workers that left must not linger as stale series
    for w in workers.workers:
        by_state[state_name(w.state)] += 1
        if w.state == monitor_pb2.WORKER_STATE_OFFLINE:
            continue
        m.worker_tasks.labels(w.worker_id).set(w.active_tasks)
        for index, gpu in enumerate(w.gpus):
            m.gpu_mem_total.labels(w.worker_id, gpu.name, str(index)).set(gpu.memory_total_bytes)
        for sample in w.metrics:
            name = w.gpus[sample.index].name if sample.index < len(w.gpus) else ""
            labels = (w.worker_id, name, str(sample.index))
            m.gpu_util.labels(*labels).set(sample.utilization_percent)
            m.gpu_mem_used.labels(*labels).set(sample.memory_used_bytes)
    for state, count in by_state.items():
        m.workers.labels(state).set(count)
