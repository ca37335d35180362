"""Prometheus metrics of one gateway process: what it relays, plus cluster gauges set on scrape."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

# Seconds; spans a zero-delay sim (sub-millisecond) to long generations.
_LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0,
)  # fmt: skip


class GatewayMetrics:
    """The gateway's metrics in their own registry (one per app, so tests stay independent)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._relay_metrics(self.registry)
        self._cluster_metrics(self.registry)

    def _relay_metrics(self, r: CollectorRegistry) -> None:
        """What this gateway sees of the requests it relays."""
        self.requests = Counter(
            "gpucloud_requests",
            "Chat completion requests by model and HTTP status.",
            ["model", "status", "stream"],
            registry=r,
        )
        self.tokens = Counter(
            "gpucloud_tokens", "Tokens billed by model and kind.", ["model", "kind"], registry=r
        )
        self.queue_wait = Histogram(
            "gpucloud_queue_wait_seconds", "Time tasks waited in the queue.", ["model"],
            buckets=_LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.ttft = Histogram(
            "gpucloud_time_to_first_token_seconds", "Task creation to first token.", ["model"],
            buckets=_LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.latency = Histogram(
            "gpucloud_request_duration_seconds", "Gateway-measured completion latency.",
            ["model", "stream"], buckets=_LATENCY_BUCKETS, registry=r,
        )  # fmt: skip

    def _cluster_metrics(self, r: CollectorRegistry) -> None:
        """Gauges copied from the core's MonitorService when /metrics is scraped."""
        self.queue_depth = Gauge("gpucloud_queue_depth", "Tasks waiting.", registry=r)
        self.queue_capacity = Gauge("gpucloud_queue_capacity", "Queue bound.", registry=r)
        self.running = Gauge("gpucloud_tasks_running", "Tasks running on workers.", registry=r)
        self.oldest_wait = Gauge(
            "gpucloud_queue_oldest_wait_seconds", "Wait of the oldest queued task.", registry=r
        )
        self.workers = Gauge("gpucloud_workers", "Workers by state.", ["state"], registry=r)
        gpu = ["worker", "gpu", "index"]
        self.gpu_util = Gauge(
            "gpucloud_gpu_utilization_percent", "GPU utilisation.", gpu, registry=r
        )
        self.gpu_mem_used = Gauge(
            "gpucloud_gpu_memory_used_bytes", "GPU memory in use.", gpu, registry=r
        )
        self.gpu_mem_total = Gauge(
            "gpucloud_gpu_memory_total_bytes", "GPU memory.", gpu, registry=r
        )
        self.worker_tasks = Gauge(
            "gpucloud_worker_active_tasks", "Tasks running per worker.", ["worker"], registry=r
        )
        self.core_up = Gauge("gpucloud_core_up", "1 when the last core query worked.", registry=r)

    def completed(
        self,
        *,
        model: str,
        stream: bool,
        prompt_tokens: int,
        completion_tokens: int,
        queue_wait_ms: int,
        ttft_ms: float,
        total_s: float,
    ) -> None:
        flag = "true" if stream else "false"
        self.requests.labels(model, "200", flag).inc()
        self.tokens.labels(model, "prompt").inc(prompt_tokens)
        self.tokens.labels(model, "completion").inc(completion_tokens)
        self.queue_wait.labels(model).observe(queue_wait_ms / 1000.0)
        self.ttft.labels(model).observe(ttft_ms / 1000.0)
        self.latency.labels(model, flag).observe(total_s)

    def failed(self, *, status: int, stream: bool, model: str = "") -> None:
        """Counts a failed request; `model` only when a worker served it (bounded labels)."""
        self.requests.labels(model, str(status), "true" if stream else "false").inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
