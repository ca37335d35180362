"""The OpenAPI 3.1 document at /openapi.json, written from what the gateway runs.

Each route is an `ApiRoute` carrying its `Operation`; request bodies and query
parameters are the field tables the handlers parse with (fields.py), response
bodies the TypedDicts their builders are typed by, so the document follows the
code instead of being kept beside it.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Literal, NotRequired, Union, get_args, get_origin, get_type_hints

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from gpucloud_gateway.fields import Body, Query, Schema
from gpucloud_gateway.openai_objects import ErrorResponse

OPENAPI_VERSION = "3.1.0"
Auth = Literal["api_key", "jwt", "jwt_or_query", "optional_jwt", "none"]
_SECURITY: dict[Auth, list[dict[str, list[str]]]] = {
    "api_key": [{"apiKey": []}],
    "jwt": [{"jwt": []}],
    "jwt_or_query": [{"jwt": []}, {"jwtQuery": []}],
    "optional_jwt": [{}, {"jwt": []}],
    "none": [],
}
_SECURITY_SCHEMES = {
    "apiKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key (`sk-…`), made in the dashboard or with POST /api/keys.",
    },
    "jwt": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "The token POST /api/auth/login answers with.",
    },
    "jwtQuery": {
        "type": "apiKey",
        "in": "query",
        "name": "token",
        "description": "The login token in the query, for EventSource, which sends no headers.",
    },
}
# The failures each kind of caller may see, besides 405 and 413 on any route.
_ERRORS: dict[Auth, tuple[int, ...]] = {
    "api_key": (400, 401, 403, 404, 429, 500, 503),
    "jwt": (400, 401, 403, 404, 500, 503),
    "jwt_or_query": (400, 401, 403, 500, 503),
    "optional_jwt": (400, 500),
    "none": (400, 500),
}
_STATUS_TEXT = {
    200: "OK",
    201: "Created",
    400: "The request is malformed; `param` names the field.",
    401: "The credential is missing, unknown, revoked or expired.",
    403: "The credential may not do this.",
    404: "No such object.",
    429: "A rate limit or the queue is full; see Retry-After.",
    500: "An unexpected error; the message carries the request id.",
    503: "The core or every worker for the model is unavailable; retry later.",
    413: "The body is larger than the gateway accepts.",
    405: "The path does not take this method; see Allow.",
}


@dataclass(frozen=True, slots=True)
class Operation:
    """What the document says about one route: its request and answers."""

    summary: str
    tag: str
    auth: Auth
    response: Any  # a TypedDict, or a Schema for answers that are not JSON objects
    body: Body | None = None
    query: Query | None = None
    status: int = 200
    media_type: str = "application/json"
    # Server-sent events: the TypedDict of each `data:` line by event name ("message" unnamed).
    events: dict[str, Any] = field(default_factory=dict)
    # Other answers that are not errors (e.g. /readyz's 503), status -> description.
    also: dict[int, str] = field(default_factory=dict)


class ApiRoute(Route):
    """A route with its documentation; one method each, as the document lists them."""

    def __init__(
        self, path: str, endpoint: Callable[..., Any], *, method: str, doc: Operation
    ) -> None:
        super().__init__(path, endpoint, methods=[method])  # Starlette adds HEAD to GET
        self.method = method
        self.doc = doc


class _Schemas:
    """components/schemas, filled as TypedDicts are met; each is referenced by its name."""

    def __init__(self) -> None:
        self.named: dict[str, Schema] = {}

    def ref(self, name: str, schema: Schema) -> Schema:
        self.named.setdefault(name, schema)
        return {"$ref": f"#/components/schemas/{name}"}

    def of(self, tp: Any) -> Schema:
        """The JSON Schema of a type annotation."""
        if typing.is_typeddict(tp):
            if tp.__name__ not in self.named:
                self.named[tp.__name__] = {}  # a placeholder, for recursive types
                self.named[tp.__name__] = self._typeddict(tp)
            return {"$ref": f"#/components/schemas/{tp.__name__}"}
        origin, args = get_origin(tp), get_args(tp)
        if origin is Literal:
            return {"const": args[0]} if len(args) == 1 else {"enum": list(args)}
        if origin in (Union, types.UnionType):
            return {"anyOf": [self.of(a) for a in args]}
        if origin is list:
            return {"type": "array", "items": self.of(args[0])}
        if origin is dict:
            return {"type": "object", "additionalProperties": self.of(args[1])}
        simple = {str: "string", int: "integer", float: "number", bool: "boolean"}
        if tp is None or tp is type(None):
            return {"type": "null"}
        if tp in simple:
            return {"type": simple[tp]}
        raise TypeError(f"no JSON Schema for {tp!r}")

    def _typeddict(self, tp: Any) -> Schema:
        hints = get_type_hints(tp, include_extras=True)
        properties: dict[str, Schema] = {}
        required: list[str] = []
        for name, hint in hints.items():
            if get_origin(hint) is NotRequired:
                hint = get_args(hint)[0]
            elif name in tp.__required_keys__:
                required.append(name)
            properties[name] = self.of(hint)
        out: Schema = {"type": "object", "properties": properties, "required": required}
        if tp.__doc__ and not tp.__doc__.startswith(tp.__name__ + "("):
            out["description"] = " ".join(tp.__doc__.split())
        return out


def _path(route: Route) -> str:
    """Starlette's `{model:path}` as OpenAPI's `{model}`."""
    return re.sub(r"{(\w+):\w+}", r"{\1}", route.path)


def _operation_id(method: str, path: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", f"{method.lower()} {path}").strip("_")


def _content(doc: Operation, schemas: _Schemas) -> dict[str, Schema]:
    if isinstance(doc.response, dict):
        content: dict[str, Schema] = {doc.media_type: {"schema": doc.response}}
    else:
        content = {doc.media_type: {"schema": schemas.of(doc.response)}}
    if doc.events:
        content["text/event-stream"] = {
            "schema": {
                "type": "string",
                "description": "Server-sent events; `: …` comment lines keep the connection "
                "alive (and tell a queued request its position). A failure after the start "
                "ends the stream with an `ErrorResponse` data line.",
            },
            "x-events": {name: schemas.of(tp) for name, tp in doc.events.items()},
        }
    return content


def _operation(route: ApiRoute, schemas: _Schemas) -> Schema:
    doc = route.doc
    responses: dict[str, Any] = {
        str(doc.status): {
            "description": _STATUS_TEXT.get(doc.status, "OK"),
            "headers": {"x-request-id": {"$ref": "#/components/headers/RequestId"}},
            "content": _content(doc, schemas),
        }
    }
    for status, text in doc.also.items():
        responses[str(status)] = {"description": text, "content": _content(doc, schemas)}
    for status in (*_ERRORS[doc.auth], 405, 413):
        responses.setdefault(str(status), {"$ref": f"#/components/responses/Error{status}"})
    out: Schema = {
        "operationId": _operation_id(route.method, route.path),
        "summary": doc.summary,
        "tags": [doc.tag],
        "security": _SECURITY[doc.auth],
        "responses": responses,
    }
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in route.param_convertors
    ]
    if doc.query is not None:
        parameters += doc.query.parameters()
    if parameters:
        out["parameters"] = parameters
    if doc.body is not None:
        schema = schemas.ref(doc.body.title, doc.body.schema())
        out["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schema, "example": doc.body.example}},
        }
    return out


def _version() -> str:
    try:
        return metadata.version("gpucloud")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def document(routes: Iterable[BaseRoute]) -> Schema:
    """The OpenAPI document of the documented routes among `routes`."""
    schemas = _Schemas()
    error = schemas.of(ErrorResponse)
    paths: dict[str, dict[str, Schema]] = {}
    for route in routes:
        if isinstance(route, ApiRoute):
            paths.setdefault(_path(route), {})[route.method.lower()] = _operation(route, schemas)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "gpucloud",
            "version": _version(),
            "summary": "An OpenAI-compatible GPU inference cloud.",
            "description": "OpenAI-compatible routes at /v1 (and the /api/v1 alias), the "
            "management API of the dashboard at /api, and operations endpoints. Every "
            'error is the OpenAI envelope `{"error": {message, type, param, code}}`.',
        },
        "paths": paths,
        "components": {
            "schemas": dict(sorted(schemas.named.items())),
            "securitySchemes": _SECURITY_SCHEMES,
            "headers": {
                "RequestId": {
                    "description": "The request's id, also in the gateway's log line.",
                    "schema": {"type": "string"},
                }
            },
            "responses": {
                f"Error{status}": {
                    "description": _STATUS_TEXT[status],
                    "headers": {"x-request-id": {"$ref": "#/components/headers/RequestId"}},
                    "content": {"application/json": {"schema": error}},
                }
                for status in sorted({s for e in _ERRORS.values() for s in e} | {405, 413})
            },
        },
    }


def openapi_route() -> ApiRoute:
    """GET /openapi.json: the document of the app serving it, written at the first request."""
    cached: list[bytes] = []

    async def openapi(request: Request) -> Response:
        if not cached:
            cached.append(orjson.dumps(document(request.app.routes)))
        return Response(cached[0], media_type="application/json")

    doc = Operation(
        "This document",
        "Operations",
        "none",
        {"type": "object", "description": "An OpenAPI 3.1 document."},
    )
    return ApiRoute("/openapi.json", openapi, method="GET", doc=doc)
