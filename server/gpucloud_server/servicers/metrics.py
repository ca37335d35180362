"""Usage aggregates as GetMetricsResponse: the proto face of identity.metrics.MetricsReport."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from gpucloud.v1 import monitor_pb2
from gpucloud_server.identity.metrics import MetricsReport, Percentiles, Slice


def _timestamp(seconds: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromMilliseconds(round(seconds * 1000))
    return stamp


def _slice(item: Slice) -> monitor_pb2.UsageSlice:
    return monitor_pb2.UsageSlice(
        id=item.id,
        label=item.label,
        requests=item.requests,
        prompt_tokens=item.prompt_tokens,
        completion_tokens=item.completion_tokens,
    )


def _latency(p: Percentiles) -> monitor_pb2.LatencyPercentiles:
    return monitor_pb2.LatencyPercentiles(p50=p.p50, p90=p.p90, p99=p.p99)


def metrics_response(report: MetricsReport) -> monitor_pb2.GetMetricsResponse:
    return monitor_pb2.GetMetricsResponse(
        buckets=[
            monitor_pb2.MetricsBucket(
                start=_timestamp(b.start), requests=b.requests, tokens=b.tokens, errors=b.errors
            )
            for b in report.buckets
        ],
        by_model=[_slice(s) for s in report.by_model],
        by_key=[_slice(s) for s in report.by_key],
        time_to_first_token=_latency(report.time_to_first_token),
        total_time=_latency(report.total_time),
    )
