"""Proto messages of the Auth and Monitor services as the management API's camelCase JSON.

The shapes are those of docs/management-api.md; times are ISO 8601 strings or null.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal, TypedDict

from google.protobuf.timestamp_pb2 import Timestamp

from gpucloud.v1 import auth_pb2, monitor_pb2, worker_pb2

_ROLES: dict[int, Role] = {auth_pb2.USER_ROLE_ADMIN: "admin", auth_pb2.USER_ROLE_MEMBER: "member"}
ROLE_VALUES = {"admin": auth_pb2.USER_ROLE_ADMIN, "member": auth_pb2.USER_ROLE_MEMBER}
_STATES: dict[int, State] = {
    monitor_pb2.WORKER_STATE_ONLINE: "online",
    monitor_pb2.WORKER_STATE_DRAINING: "draining",
    monitor_pb2.WORKER_STATE_UNHEALTHY: "unhealthy",
    monitor_pb2.WORKER_STATE_OFFLINE: "offline",
}


Role = Literal["admin", "member"]
State = Literal["online", "draining", "unhealthy", "offline"]


class User(TypedDict):
    id: str
    email: str
    role: Role
    mustChangePassword: bool
    createdAt: str | None


class ApiKey(TypedDict):
    """A key as lists show it: never the secret, only its last 4 characters."""

    id: str
    name: str
    ownerId: str
    ownerEmail: str
    last4: str
    createdAt: str | None
    lastUsedAt: str | None
    revokedAt: str | None
    expiresAt: str | None
    allowedModels: list[str]
    rateLimitPerMinute: int
    tokensPerMinute: int
    priority: int
    requests: int
    tokens: int


class Gpu(TypedDict):
    name: str
    memoryTotalBytes: int
    memoryBandwidthGbps: float
    bf16Tflops: float


class GpuSample(TypedDict):
    index: int
    utilizationPercent: float
    memoryUsedBytes: int
    temperatureCelsius: float | None
    powerWatts: float | None


class Worker(TypedDict):
    id: str
    name: str
    backend: str
    state: State
    gpus: list[Gpu]
    metrics: list[GpuSample]
    models: list[str]
    activeTasks: int
    slots: int
    lastHeartbeat: str | None
    connectedAt: str | None
    statusMessage: str
    tasksCompleted: int


class PriorityDepth(TypedDict):
    priority: int
    depth: int


class Queue(TypedDict):
    depth: int
    capacity: int
    byPriority: list[PriorityDepth]
    oldestWaitMs: int
    recentWaitsMs: list[int]
    running: int


class UsageSlice(TypedDict):
    id: str
    label: str
    requests: int
    promptTokens: int
    completionTokens: int


class Percentiles(TypedDict):
    p50: float
    p90: float
    p99: float


class MetricsBucket(TypedDict):
    start: str
    requests: int
    tokens: int
    errors: int


class Metrics(TypedDict):
    buckets: list[MetricsBucket]
    byModel: list[UsageSlice]
    byKey: list[UsageSlice]
    timeToFirstToken: Percentiles
    totalTime: Percentiles


class ClusterStats(TypedDict):
    workersOnline: int
    workersTotal: int
    queueDepth: int
    running: int
    requestsPerSecond: float
    tokensPerSecond: float
    gpuUtilizationPercent: float
    recentErrors: int


class TaskError(TypedDict):
    taskId: str
    model: str
    code: str
    message: str
    time: str | None


# The answers of the management routes.
class LoginResponse(TypedDict):
    token: str
    expiresAt: str
    user: User


class UserResponse(TypedDict):
    user: User


class KeyList(TypedDict):
    keys: list[ApiKey]


class KeyResponse(TypedDict):
    key: ApiKey


class CreatedKey(TypedDict):
    """The new key, and its secret: shown this once, never again."""

    key: ApiKey
    secret: str


class WorkerList(TypedDict):
    workers: list[Worker]


def iso(ts: Timestamp) -> str:
    """A protobuf Timestamp as ISO 8601 UTC with milliseconds, e.g. 2025-01-31T12:00:00.000Z."""
    moment = datetime.fromtimestamp(ts.seconds + ts.nanos / 1e9, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _opt_time(message: Any, field: str) -> str | None:
    return iso(getattr(message, field)) if message.HasField(field) else None


def timestamp(value: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(value if value.tzinfo else value.replace(tzinfo=UTC))
    return ts


def user(u: auth_pb2.User) -> User:
    return {
        "id": u.id,
        "email": u.email,
        "role": _ROLES.get(u.role, "member"),
        "mustChangePassword": u.must_change_password,
        "createdAt": _opt_time(u, "created_at"),
    }


def api_key(k: auth_pb2.ApiKey) -> ApiKey:
    """A key as lists show it: never the secret."""
    return {
        "id": k.id,
        "name": k.name,
        "ownerId": k.owner_id,
        "ownerEmail": k.owner_email,
        "last4": k.last4,
        "createdAt": _opt_time(k, "created_at"),
        "lastUsedAt": _opt_time(k, "last_used_at"),
        "revokedAt": _opt_time(k, "revoked_at"),
        "expiresAt": _opt_time(k, "expires_at"),
        "allowedModels": list(k.allowed_models),
        "rateLimitPerMinute": k.rate_limit_per_minute,
        "tokensPerMinute": k.tokens_per_minute,
        "priority": k.priority,
        "requests": k.requests,
        "tokens": k.tokens,
    }


def _gpu(g: worker_pb2.GpuSpec) -> Gpu:
    return {
        "name": g.name,
        "memoryTotalBytes": g.memory_total_bytes,
        "memoryBandwidthGbps": g.memory_bandwidth_gbps,
        "bf16Tflops": g.bf16_tflops,
    }


def _gpu_metrics(m: worker_pb2.GpuMetrics) -> GpuSample:
    return {
        "index": m.index,
        "utilizationPercent": m.utilization_percent,
        "memoryUsedBytes": m.memory_used_bytes,
        "temperatureCelsius": m.temperature_celsius if m.HasField("temperature_celsius") else None,
        "powerWatts": m.power_watts if m.HasField("power_watts") else None,
    }


def state_name(state: int) -> State:
    return _STATES.get(int(state), "offline")


def worker(w: monitor_pb2.WorkerStatus) -> Worker:
    return {
        "id": w.worker_id,
        "name": w.name,
        "backend": w.backend,
        "state": state_name(w.state),
        "gpus": [_gpu(g) for g in w.gpus],
        "metrics": [_gpu_metrics(m) for m in w.metrics],
        "models": list(w.models),
        "activeTasks": w.active_tasks,
        "slots": w.slots,
        "lastHeartbeat": _opt_time(w, "last_heartbeat"),
        "connectedAt": _opt_time(w, "connected_at"),
        "statusMessage": w.status_message,
        "tasksCompleted": w.tasks_completed,
    }


def queue(q: monitor_pb2.GetQueueResponse) -> Queue:
    return {
        "depth": q.depth,
        "capacity": q.capacity,
        "byPriority": [{"priority": p.priority, "depth": p.depth} for p in q.by_priority],
        "oldestWaitMs": q.oldest_wait_ms,
        "recentWaitsMs": list(q.recent_waits_ms),
        "running": q.running,
    }


def _slice(s: monitor_pb2.UsageSlice) -> UsageSlice:
    return {
        "id": s.id,
        "label": s.label,
        "requests": s.requests,
        "promptTokens": s.prompt_tokens,
        "completionTokens": s.completion_tokens,
    }


def _percentiles(p: monitor_pb2.LatencyPercentiles) -> Percentiles:
    return {"p50": p.p50, "p90": p.p90, "p99": p.p99}


def metrics(m: monitor_pb2.GetMetricsResponse) -> Metrics:
    return {
        "buckets": [
            {"start": iso(b.start), "requests": b.requests, "tokens": b.tokens, "errors": b.errors}
            for b in m.buckets
        ],
        "byModel": [_slice(s) for s in m.by_model],
        "byKey": [_slice(s) for s in m.by_key],
        "timeToFirstToken": _percentiles(m.time_to_first_token),
        "totalTime": _percentiles(m.total_time),
    }


def stats(s: monitor_pb2.ClusterStats) -> ClusterStats:
    return {
        "workersOnline": s.workers_online,
        "workersTotal": s.workers_total,
        "queueDepth": s.queue_depth,
        "running": s.running,
        "requestsPerSecond": s.requests_per_second,
        "tokensPerSecond": s.tokens_per_second,
        "gpuUtilizationPercent": s.gpu_utilization_percent,
        "recentErrors": s.recent_errors,
    }


def task_error(e: monitor_pb2.TaskError) -> TaskError:
    return {
        "taskId": e.task_id,
        "model": e.model,
        "code": e.code,
        "message": e.message,
        "time": _opt_time(e, "time"),
    }


# The live feed's events by name, as /api/monitoring/events sends them.
WATCH_EVENTS = {"worker": Worker, "stats": ClusterStats, "task_error": TaskError}


def watch_event(event: monitor_pb2.WatchResponse) -> tuple[str, Mapping[str, object]] | None:
    """The SSE event name and data of one Watch event; None for kinds this gateway predates."""
    kind = event.WhichOneof("event")
    if kind == "worker":
        return "worker", worker(event.worker)
    if kind == "stats":
        return "stats", stats(event.stats)
    if kind == "task_error":
        return "task_error", task_error(event.task_error)
    return None
