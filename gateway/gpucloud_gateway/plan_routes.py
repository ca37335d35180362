"""POST /api/plan and GET /api/plan/catalog: the capacity planner (gpucloud_sim.plan) over HTTP.

A plan is pure CPU work (bounded by the library to a few seconds), so it runs in a
process of its own (`gpucloud_sim.plan_worker`, killed at PLAN_DEADLINE_S) while the
event loop serves everyone else, and at most `PLAN_SLOTS` run at once per gateway
process: more are refused with 429 and Retry-After rather than queued behind each other.
The caller's JWT is checked by the core (GetMe) before any work; members and admins
alike may plan.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import pickle
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from gpucloud.v1 import auth_pb2, auth_pb2_grpc
from gpucloud_gateway import plan_json as pj
from gpucloud_gateway.errors import ApiError, from_grpc, invalid
from gpucloud_gateway.fields import Body, Field, Integer, Object, Schema, String, StringList
from gpucloud_gateway.management import json_response
from gpucloud_gateway.metadata import jwt_credential, session_metadata
from gpucloud_gateway.middleware import request_info
from gpucloud_gateway.openapi import ApiRoute, Operation
from gpucloud_gateway.validation import decimal, type_error
from gpucloud_sim.cost import PRECISIONS
from gpucloud_sim.gpus import GPUS
from gpucloud_sim.models import MODELS
from gpucloud_sim.plan import Lengths, ModelWorkload, PlanRequest, Slo
from gpucloud_sim.plan_json import MAX_WORKLOADS
from gpucloud_sim.plan_request import DEFAULT_PRICES, MAX_GPUS_LIMIT

log = logging.getLogger("gpucloud.gateway.plan")

# Plans running at once per gateway process; each holds a CPU for up to a few seconds.
PLAN_SLOTS = 1
# A plan takes about a second or two: when to come back after a 429.
RETRY_AFTER_MS = 2000
# A plan the library bounds to seconds; past this its process is killed and the caller
# gets a 503 rather than a gateway busy for longer.
PLAN_DEADLINE_S = 60.0

PlanRunner = Callable[[PlanRequest], Awaitable[dict[str, Any]]]


async def plan_in_process(request: PlanRequest) -> dict[str, Any]:
    """The plan's JSON, computed by `gpucloud_sim.plan_worker` in a child process."""
    # Prices may be a read-only mapping proxy, which does not pickle.
    payload = pickle.dumps(dataclasses.replace(request, prices=dict(request.prices)))
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gpucloud_sim.plan_worker",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(child.communicate(payload), PLAN_DEADLINE_S)
    except TimeoutError:
        raise ApiError(503, "The capacity plan took too long; ask for less.") from None
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    if child.returncode != 0:
        log.error("the plan process failed", extra={"stderr": err.decode(errors="replace")[-2000:]})
        raise ApiError(500, "The capacity planner failed.")
    document: dict[str, Any] = orjson.loads(out)
    return document


# The rate the dashboard's form starts at, requests/s: a plan with a smaller fleet to show (~0.5 s).
DEFAULT_RATE = 10.0
_LONGEST = max(m.max_context for m in MODELS)
_TAG = "Capacity planning"


class Bounded(Field):
    """A number in `low`..`high` (`low` itself excluded when `open_low`)."""

    json_type = {"type": "number"}

    def __init__(
        self, name: str, description: str, low: float, high: float, *, open_low: bool, **kw: Any
    ) -> None:
        super().__init__(name, description, **kw)
        self.low, self.high, self.open_low = low, high, open_low

    def check(self, value: Any) -> float:
        number = decimal(value, self.param)
        below = number <= self.low if self.open_low else number < self.low
        if below or not number <= self.high:  # NaN fails the second test
            low = f"> {self.low:g}" if self.open_low else f">= {self.low:g}"
            raise invalid(
                f"Invalid '{self.param}': expected a number {low} and <= {self.high:g}, "
                f"but got {value} instead.",
                self.param,
                "invalid_value",
            )
        return number

    def schema(self) -> Schema:
        low = "exclusiveMinimum" if self.open_low else "minimum"
        return {**super().schema(), low: self.low, "maximum": self.high}


class IntegerList(Field):
    """Distinct integers in `low`..`high`."""

    json_type = {"type": "array"}
    absent = ()

    def __init__(self, name: str, description: str, low: int, high: int, **kw: Any) -> None:
        super().__init__(name, description, **kw)
        self.item = Integer(name, description, low, high, param=self.param)

    def check(self, value: Any) -> list[int]:
        if not isinstance(value, list) or not value:
            raise type_error(self.param, "a non-empty array of integers", value)
        return sorted({self.item.check(v) for v in value})

    def schema(self) -> Schema:
        item = {"type": "integer", "minimum": self.item.low, "maximum": self.item.high}
        return {**super().schema(), "items": item, "minItems": 1}


class Enumerated(StringList):
    """Strings, each one of `allowed`."""

    def __init__(self, name: str, description: str, allowed: tuple[str, ...], **kw: Any) -> None:
        super().__init__(name, description, **kw)
        self.allowed = allowed

    def check(self, value: Any) -> list[str]:
        for item in super().check(value):
            if item not in self.allowed:
                raise invalid(
                    f"Invalid '{self.param}': {item!r} is not one of {', '.join(self.allowed)}.",
                    self.param,
                    "invalid_value",
                )
        return list(dict.fromkeys(value))

    def schema(self) -> Schema:
        return {**super().schema(), "items": {"type": "string", "enum": list(self.allowed)}}


class Prices(Field):
    """$ per GPU-hour by GPU kind; kinds left out keep their default price."""

    json_type = {"type": "object"}

    def check(self, value: Any) -> dict[str, float]:
        if not isinstance(value, dict):
            raise type_error(self.param, "an object", value)
        out: dict[str, float] = {}
        for key, price in value.items():
            param = f"{self.param}.{key}"
            if key not in GPUS:
                raise invalid(
                    f"Unknown GPU kind '{key}' in '{self.param}'.", param, "invalid_value"
                )
            out[key] = Bounded(key, "", 0, 1e6, open_low=False, param=param).check(price)
        return out

    def schema(self) -> Schema:
        price = {"type": "number", "minimum": 0, "maximum": 1e6}
        return {
            **super().schema(),
            "propertyNames": {"enum": list(GPUS)},
            "additionalProperties": price,
        }


class ObjectList(Field):
    """An array of objects of one field table; errors name the item (`workloads[1].model`)."""

    json_type = {"type": "array"}

    def __init__(self, name: str, description: str, item: Object, most: int, **kw: Any) -> None:
        super().__init__(name, description, **kw)
        self.item, self.most = item, most

    def check(self, value: Any) -> list[dict[str, Any]]:
        if not isinstance(value, list) or not 1 <= len(value) <= self.most:
            raise type_error(self.param, f"an array of 1 to {self.most} objects", value)
        out = []
        for i, item in enumerate(value):
            try:
                out.append(self.item.check(item))
            except ApiError as err:
                where = f"{self.param}[{i}]"
                err.param = (err.param or self.param).replace(f"{self.param}[]", where)
                err.message = err.message.replace(f"{self.param}[]", where)
                raise
        return out

    def schema(self) -> Schema:
        out = {**super().schema(), "items": self.item.schema(), "minItems": 1}
        return {**out, "maxItems": self.most}


def _lengths(name: str, what: str) -> Object:
    where = f"workloads[].{name}"
    return Object(
        name,
        f"{what} per request: lognormal with this mean and coefficient of variation.",
        [
            Integer("mean", "Mean tokens.", 1, _LONGEST, required=True, param=f"{where}.mean"),
            Bounded("cv", "Spread (0: all the same).", 0, 4, open_low=False, param=f"{where}.cv"),
        ],
        param=where,
    )


WORKLOAD = Object(
    "workloads",
    "One model's traffic.",
    [
        String("model", "A model id of GET /api/plan/catalog.", required=True,
               param="workloads[].model"),
        Bounded("ratePerSecond", "Poisson arrivals, requests/s.", 0, 100_000, open_low=True,
                required=True, param="workloads[].ratePerSecond"),
        _lengths("promptTokens", "Prompt tokens"),
        _lengths("outputTokens", "Output tokens"),
    ],
    param="workloads[]",
)  # fmt: skip
PLAN = Body(
    "PlanRequest",
    "Workloads and latency objectives; answered with the cheapest fleet per model that "
    "meets them, simulated on the virtual clock.",
    [
        ObjectList("workloads", "A pool of workers per model.", WORKLOAD, MAX_WORKLOADS,
                   required=True),
        Object("slo", "The p99 objectives, ms; defaults 500 and 50.", [
            Bounded("ttftP99Ms", "Time to first token, p99.", 0, 600_000, open_low=True,
                    param="slo.ttftP99Ms"),
            Bounded("tpotP99Ms", "Time per output token, p99.", 0, 60_000, open_low=True,
                    param="slo.tpotP99Ms"),
        ]),
        Prices("prices", "$ per GPU-hour by GPU kind; the rest keep their defaults."),
        Enumerated("gpus", "GPU kinds to consider; empty: all.", tuple(GPUS)),
        IntegerList("gpuCounts", "GPUs per worker (tensor parallel) to try.", 1, 8),
        String("precision", "Weights and KV cache precision; bf16 when left out.",
               enum=PRECISIONS),
        Integer("maxGpus", "The most GPUs one pool may hold.", 1, MAX_GPUS_LIMIT),
    ],
    example={
        "workloads": [{
            "model": MODELS[0].id,
            "ratePerSecond": 4,
            "promptTokens": {"mean": 256, "cv": 0.5},
            "outputTokens": {"mean": 64},
        }],
        "slo": {"ttftP99Ms": 500, "tpotP99Ms": 50},
        "prices": {"h100": 2.49},
        "gpus": ["h100", "rtx4090"],
        "gpuCounts": [1, 2],
    },
)  # fmt: skip


def _given(values: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """The members present, under the library's names; absent ones keep its defaults."""
    return {ours: values[theirs] for theirs, ours in names.items() if values[theirs] is not None}


def _workload(body: dict[str, Any], i: int) -> ModelWorkload:
    sizes = {"prompt_tokens": body["promptTokens"], "output_tokens": body["outputTokens"]}
    try:
        lengths: dict[str, Any] = {
            name: Lengths(**_given(value, {"mean": "mean", "cv": "cv"}))
            for name, value in sizes.items()
            if value is not None
        }
        return ModelWorkload(body["model"], body["ratePerSecond"], **lengths)
    except ValueError as err:  # the checks left to the library: the model must be known
        raise invalid(str(err), f"workloads[{i}].model", "invalid_value") from None


def plan_request(raw: bytes) -> PlanRequest:
    """The PlanRequest of a JSON body; a 400 naming the field otherwise."""
    body = PLAN.parse(raw)
    workloads = tuple(_workload(w, i) for i, w in enumerate(body["workloads"]))
    slo = Slo(**_given(body["slo"] or {"ttftP99Ms": None, "tpotP99Ms": None}, _SLO_NAMES))
    options = _given(body, {"precision": "precision", "maxGpus": "max_gpus"})
    if body["gpuCounts"]:
        options["gpu_counts"] = tuple(body["gpuCounts"])
    try:
        return PlanRequest(
            workloads,
            slo,
            prices={**DEFAULT_PRICES, **(body["prices"] or {})},
            gpus=tuple(body["gpus"]),
            **options,
        )
    except ValueError as err:
        # What the table cannot see: one model twice, say. Name the likeliest field.
        message = str(err)
        param = next((p for w, p in _PARAMS if w in message), "workloads")
        raise invalid(message, param, "invalid_value") from None


_SLO_NAMES = {"ttftP99Ms": "ttft_p99_ms", "tpotP99Ms": "tpot_p99_ms"}
_PARAMS = (("price", "prices"), ("precision", "precision"), ("GPU count", "gpuCounts"))


class PlanGate:
    """At most `slots` plans at once. A slot is held until its thread ends, even when the
    client left first: a thread cannot be cancelled, so the bound would leak otherwise."""

    def __init__(self, slots: int, runner: PlanRunner = plan_in_process) -> None:
        self.slots = slots
        self.runner = runner
        self.running = 0
        self._tasks: set[asyncio.Task[dict[str, Any]]] = set()

    def acquire(self) -> None:
        if self.running >= self.slots:
            raise ApiError(
                429,
                "Another capacity plan is running on this gateway; retry in a moment.",
                code="plan_busy",
                headers={"retry-after-ms": str(RETRY_AFTER_MS)},
            )
        self.running += 1

    def release(self) -> None:
        self.running -= 1

    async def run(self, request: PlanRequest) -> dict[str, Any]:
        self.acquire()
        task = asyncio.ensure_future(self.runner(request))
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return await asyncio.shield(task)

    async def drain(self) -> None:
        """Until every plan started has ended, its client gone or not."""
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _finished(self, task: asyncio.Task[dict[str, Any]]) -> None:
        self._tasks.discard(task)
        self.release()
        if not task.cancelled():
            task.exception()  # retrieved: a plan whose client left is not "never retrieved"


class PlanRoutes:
    """The planner's routes, sharing one AuthService stub and one gate."""

    def __init__(self, channel: grpc.aio.Channel, timeout_s: float, slots: int = PLAN_SLOTS):
        self._auth = auth_pb2_grpc.AuthServiceStub(channel)
        self._timeout_s = timeout_s
        self.gate = PlanGate(slots)

    def routes(self) -> list[BaseRoute]:
        return [
            ApiRoute(
                "/api/plan",
                self.plan,
                method="POST",
                doc=Operation(
                    "Plan the cheapest fleet that meets latency SLOs (429 with Retry-After "
                    "while another plan runs on this gateway)",
                    _TAG,
                    "jwt",
                    pj.PlanResponse,
                    body=PLAN,
                ),
            ),
            ApiRoute(
                "/api/plan/catalog",
                self.catalog,
                method="GET",
                doc=Operation("What a plan may use", _TAG, "jwt", pj.PlanCatalog),
            ),
        ]

    async def _signed_in(self, request: Request) -> None:
        """The caller's JWT, checked by the core: GetMe is the cheapest call that does."""
        metadata = session_metadata(request, jwt_credential(request))
        try:
            await self._auth.GetMe(
                auth_pb2.GetMeRequest(), metadata=metadata, timeout=self._timeout_s
            )
        except grpc.aio.AioRpcError as err:
            request_info(request).error = err.code().name
            raise from_grpc(err, request_info(request).request_id) from None

    async def plan(self, request: Request) -> Response:
        await self._signed_in(request)
        wanted = plan_request(await request.body())
        request_info(request).model = ",".join(w.model for w in wanted.workloads)
        result = await self.gate.run(wanted)
        return json_response(pj.plan_response(result))

    async def catalog(self, request: Request) -> Response:
        await self._signed_in(request)
        return json_response(pj.catalog(DEFAULT_RATE))
