"""Simulator results as plain JSON-ready dicts, for `--json` and the HTTP API."""

from __future__ import annotations

import math

from gpucloud_sim.results import ProfileResult, RequestResult, Summary


def _number(value: float) -> float | None:
    """Rounded to the microsecond; NaN (no such figure) becomes null."""
    return None if math.isnan(value) else round(value, 3)


def summary_json(summary: Summary) -> dict[str, float | None]:
    return {
        "ttft_ms_p50": _number(summary.ttft_ms_p50),
        "ttft_ms_p99": _number(summary.ttft_ms_p99),
        "tpot_ms_p50": _number(summary.tpot_ms_p50),
        "tpot_ms_p99": _number(summary.tpot_ms_p99),
        "e2e_ms_p50": _number(summary.e2e_ms_p50),
        "output_tokens_per_s": _number(summary.output_tokens_per_s),
        "requests_per_s": _number(summary.requests_per_s),
    }


def request_json(request: RequestResult) -> dict[str, float | None]:
    return {
        "ttft_ms": _number(request.ttft_ms),
        "tpot_ms": _number(request.tpot_ms),
        "e2e_ms": _number(request.e2e_ms),
    }


def profile_json(result: ProfileResult) -> dict[str, object]:
    """`gpucloud sim profile --json`: the summary and every request in arrival order."""
    return {
        "summary": summary_json(result.summary),
        "requests": [request_json(r) for r in result.requests],
    }
