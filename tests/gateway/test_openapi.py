"""/openapi.json: valid OpenAPI 3.1, every route of the app in it, its examples accepted.

openapi-spec-validator is not a dependency, so the document's structure is checked
here, with a small JSON Schema checker for the subset the gateway writes: documented
examples must pass it, and so must the answers the gateway really gives.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import orjson
import pytest
from gateway_fakes import ADMIN_JWT, GOOD_KEY
from starlette.applications import Starlette
from starlette.routing import Route

from gpucloud_gateway.openapi import document

Doc = dict[str, Any]
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
AUTH = {"api_key": f"Bearer {GOOD_KEY}", "jwt": f"Bearer {ADMIN_JWT}"}


@pytest.fixture
async def doc(client: httpx.AsyncClient) -> Doc:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body: Doc = response.json()
    return body


def resolve(doc: Doc, ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for v in node.values() for r in refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in refs(v)]
    return []


_PYTHON_TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
    "null": type(None),
    "array": list,
    "object": dict,
}


def is_json_type(value: Any, name: str) -> bool:
    if isinstance(value, bool):  # a bool is an int to Python, not to JSON
        return name == "boolean"
    return isinstance(value, _PYTHON_TYPES[name])


def errors_of(doc: Doc, schema: Any, value: Any, where: str = "$") -> list[str]:
    """Where `value` breaks `schema` (the JSON Schema subset the gateway writes)."""
    if "$ref" in schema:
        return errors_of(doc, resolve(doc, schema["$ref"]), value, where)
    if "anyOf" in schema:
        if all(errors_of(doc, s, value, where) for s in schema["anyOf"]):
            return [f"{where}: matches no alternative"]
        return []
    out: list[str] = []
    if "const" in schema and value != schema["const"]:
        out.append(f"{where}: {value!r} is not {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{where}: {value!r} not in {schema['enum']}")
    types = schema.get("type")
    if types is not None:
        names = types if isinstance(types, list) else [types]
        if not any(is_json_type(value, name) for name in names):
            return [f"{where}: {value!r} is not {names}"]
    if isinstance(value, dict):
        for name in schema.get("required", []):
            if name not in value:
                out.append(f"{where}: missing {name}")
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                out += errors_of(doc, sub, value[name], f"{where}.{name}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            out += errors_of(doc, schema["items"], item, f"{where}[{i}]")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            out.append(f"{where}: below {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            out.append(f"{where}: above {schema['maximum']}")
    return out


def operations(doc: Doc) -> list[tuple[str, str, Doc]]:
    return [
        (path, method, op)
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if method in METHODS
    ]


def test_document_is_structurally_valid_openapi_3_1(doc: Doc) -> None:
    assert doc["openapi"] == "3.1.0"
    assert doc["info"]["title"] and doc["info"]["version"]
    for ref in refs(doc):
        resolve(doc, ref)  # raises KeyError on a dangling $ref
    schemes = doc["components"]["securitySchemes"]
    seen_ids: set[str] = set()
    for path, method, op in operations(doc):
        assert path.startswith("/")
        assert op["operationId"] not in seen_ids
        seen_ids.add(op["operationId"])
        assert op["summary"] and op["responses"]
        assert any(status.startswith("2") for status in op["responses"]), (method, path)
        for status, response in op["responses"].items():
            assert re.fullmatch(r"[1-5](\d\d|XX)", status)
            response = resolve(doc, response["$ref"]) if "$ref" in response else response
            assert response["description"]
        for requirement in op["security"]:
            assert set(requirement) <= set(schemes)
        declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
        assert declared == set(re.findall(r"{(\w+)}", path)), path
        for parameter in op.get("parameters", []):
            assert parameter["in"] in {"path", "query", "header", "cookie"}
            assert "schema" in parameter
        if "requestBody" in op:
            assert op["requestBody"]["content"]["application/json"]["schema"]


def test_every_route_of_the_app_is_documented_with_its_methods(app: Starlette, doc: Doc) -> None:
    served = {
        (re.sub(r"{(\w+):\w+}", r"{\1}", route.path), method.lower())
        for route in app.routes
        if isinstance(route, Route)
        for method in route.methods or ()
        if method != "HEAD"
    }
    documented = {(path, method) for path, method, _ in operations(doc)}
    assert served == documented
    assert {"/v1/chat/completions", "/api/keys", "/metrics", "/openapi.json"} <= set(doc["paths"])


def test_document_is_the_one_the_app_builds(app: Starlette, doc: Doc) -> None:
    assert orjson.loads(orjson.dumps(document(app.routes))) == doc


def test_auth_is_an_api_key_on_openai_routes_and_a_jwt_on_management(doc: Doc) -> None:
    paths = doc["paths"]
    assert paths["/v1/chat/completions"]["post"]["security"] == [{"apiKey": []}]
    assert paths["/api/keys"]["get"]["security"] == [{"jwt": []}]
    assert {"jwtQuery": []} in paths["/api/monitoring/events"]["get"]["security"]
    assert paths["/api/auth/login"]["post"]["security"] == []
    assert paths["/healthz"]["get"]["security"] == []


def test_errors_are_the_envelope_and_streaming_is_documented(doc: Doc) -> None:
    chat = doc["paths"]["/v1/chat/completions"]["post"]
    error = resolve(doc, chat["responses"]["401"]["$ref"])
    envelope = error["content"]["application/json"]["schema"]
    assert resolve(doc, envelope["$ref"])["required"] == ["error"]
    stream = chat["responses"]["200"]["content"]["text/event-stream"]
    assert stream["x-events"]["message"] == {"$ref": "#/components/schemas/ChatCompletionChunk"}
    feed = doc["paths"]["/api/monitoring/events"]["get"]["responses"]["200"]["content"]
    assert set(feed["text/event-stream"]["x-events"]) == {"worker", "stats", "task_error"}


async def test_requests_built_from_documented_examples_pass_validation(
    doc: Doc, client: httpx.AsyncClient
) -> None:
    examples = 0
    for path, method, op in operations(doc):
        if "requestBody" not in op:
            continue
        media = op["requestBody"]["content"]["application/json"]
        assert errors_of(doc, media["schema"], media["example"]) == []
        auth = next(iter(op["security"][0]), None) if op["security"] else None
        headers = {"authorization": AUTH["api_key" if auth == "apiKey" else "jwt"]} if auth else {}
        response = await client.request(method, path, json=media["example"], headers=headers)
        # The gateway took it; the fake core may still say no (unknown user, no such RPC).
        assert response.status_code not in (400, 422), (path, response.text)
        success = next(s for s in op["responses"] if s.startswith("2"))
        if response.status_code == int(success):
            schema = op["responses"][success]["content"]["application/json"]["schema"]
            assert errors_of(doc, schema, response.json()) == [], path
        examples += 1
    assert examples >= 6


async def test_real_answers_match_their_documented_schemas(
    doc: Doc, client: httpx.AsyncClient
) -> None:
    jwt = {"authorization": AUTH["jwt"]}
    for path, headers in [
        ("/v1/models", {"authorization": AUTH["api_key"]}),
        ("/api/keys", jwt),
        ("/api/auth/me", jwt),
        ("/api/monitoring/workers", jwt),
        ("/api/monitoring/queue", jwt),
        ("/api/monitoring/metrics", jwt),
        ("/healthz", {}),
    ]:
        response = await client.get(path, headers=headers)
        assert response.status_code == 200, (path, response.text)
        schema = doc["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]
        assert errors_of(doc, schema["schema"], response.json()) == [], path
    refused = await client.get("/api/keys")
    envelope = doc["components"]["schemas"]["ErrorResponse"]
    assert refused.status_code == 401
    assert errors_of(doc, envelope, refused.json()) == []
    bad_example = {"model": 1, "messages": "hi"}
    chat_schema = doc["components"]["schemas"]["CreateChatCompletionRequest"]
    assert errors_of(doc, chat_schema, bad_example)
