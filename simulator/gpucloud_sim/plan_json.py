"""A PlanRequest from a JSON document (the HTTP API's body), refusing what it cannot take.

    {"workloads": [{"model": "meta-llama/Meta-Llama-3-8B-Instruct", "rate_per_s": 10,
                    "prompt_tokens": 512, "output_tokens": {"mean": 128, "cv": 0.5}}],
     "slo": {"ttft_p99_ms": 500, "tpot_p99_ms": 50},
     "prices": {"h100": 2.49}, "gpus": ["h100", "a100"], "gpu_counts": [1, 2],
     "precision": "bf16", "max_gpus": 64, "requests": 400, "seed": 0}

Everything but `workloads` is optional; `prices` override the defaults key by key. A
workload may give `sizes`, recorded [prompt, output] pairs, instead of the lengths.
Every refusal is a ValueError whose message names the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gpucloud_sim.plan_request import (
    DEFAULT_GPU_COUNTS,
    DEFAULT_PRICES,
    DEFAULT_REQUESTS,
    Lengths,
    ModelWorkload,
    PlanRequest,
    Slo,
)

# Bounds on what one document may hold, so a request body cannot cost more to read
# than the plan itself.
MAX_WORKLOADS = 8
MAX_SIZES = 100_000
_FIELDS = {"workloads", "slo", "prices", "gpus", "gpu_counts", "precision", "max_gpus"}
_FIELDS |= {"requests", "seed"}


def plan_request_from_json(document: object) -> PlanRequest:
    """The PlanRequest a decoded JSON document describes; ValueError naming the field."""
    body = _object(document, "request")
    unknown = set(body) - _FIELDS
    if unknown:
        raise ValueError(f"unknown field(s): {', '.join(sorted(unknown))}")
    workloads = _list(body.get("workloads"), "workloads")
    if not 1 <= len(workloads) <= MAX_WORKLOADS:
        raise ValueError(f"workloads: give 1 to {MAX_WORKLOADS} models")
    slo = _object(body.get("slo", {}), "slo")
    prices = _object(body.get("prices", {}), "prices")
    return PlanRequest(
        tuple(_workload(w, f"workloads[{i}]") for i, w in enumerate(workloads)),
        Slo(
            _number(slo.get("ttft_p99_ms", 500.0), "slo.ttft_p99_ms"),
            _number(slo.get("tpot_p99_ms", 50.0), "slo.tpot_p99_ms"),
        ),
        prices={
            **DEFAULT_PRICES,
            **{k.lower(): _number(v, f"prices.{k}") for k, v in prices.items()},
        },
        gpus=tuple(_text(g, "gpus") for g in _list(body.get("gpus", []), "gpus")),
        gpu_counts=tuple(
            _integer(c, "gpu_counts")
            for c in _list(body.get("gpu_counts", DEFAULT_GPU_COUNTS), "gpu_counts")
        ),
        precision=_text(body.get("precision", "bf16"), "precision"),
        max_gpus=_integer(body.get("max_gpus", 64), "max_gpus"),
        requests=_integer(body.get("requests", DEFAULT_REQUESTS), "requests"),
        seed=_integer(body.get("seed", 0), "seed"),
    )


def _workload(document: object, where: str) -> ModelWorkload:
    w = _object(document, where)
    sizes = _list(w.get("sizes", []), f"{where}.sizes")
    if len(sizes) > MAX_SIZES:
        raise ValueError(f"{where}.sizes: at most {MAX_SIZES} pairs")
    pairs = tuple(_pair(pair, f"{where}.sizes") for pair in sizes)
    return ModelWorkload(
        _text(w.get("model"), f"{where}.model"),
        _number(w.get("rate_per_s"), f"{where}.rate_per_s"),
        _lengths(w.get("prompt_tokens", 512), f"{where}.prompt_tokens"),
        _lengths(w.get("output_tokens", 128), f"{where}.output_tokens"),
        pairs,
    )


def _lengths(value: object, where: str) -> Lengths:
    if isinstance(value, Mapping):
        return Lengths(
            _integer(value.get("mean"), f"{where}.mean"), _number(value.get("cv", 0), f"{where}.cv")
        )
    return Lengths(_integer(value, where))


def _pair(value: object, where: str) -> tuple[int, int]:
    items = _list(value, where)
    if len(items) != 2:
        raise ValueError(f"{where}: each entry is [prompt_tokens, output_tokens]")
    return _integer(items[0], where), _integer(items[1], where)


def _object(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: expected an object")
    return value


def _list(value: object, where: str) -> list[Any] | tuple[Any, ...]:
    if not isinstance(value, list | tuple):
        raise ValueError(f"{where}: expected a list")
    return value


def _text(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{where}: expected a string")
    return value


def _number(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where}: expected a number")
    return float(value)


def _integer(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{where}: expected an integer")
    return value
