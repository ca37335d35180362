"""The sim's JSON Schema values validate against their schema, pydantic's included."""

from __future__ import annotations

import random
from datetime import date, datetime
from enum import StrEnum
from typing import Any, Literal
from uuid import UUID

import jsonschema
import pytest
from pydantic import BaseModel, Field

from gpucloud_worker.sim.schema_values import SchemaError, instance


class Unit(StrEnum):
    CELSIUS = "celsius"
    FAHRENHEIT = "fahrenheit"


class Address(BaseModel):
    street: str
    city: str
    postcode: str | None = None


class Tag(BaseModel):
    label: str = Field(min_length=3, max_length=12)
    weight: float = Field(ge=0, le=1)


class Person(BaseModel):
    """$defs, $ref, enum, Literal, nested objects, bounded arrays, formats, optional
    fields and recursion, as pydantic writes them."""

    name: str
    age: int = Field(ge=0, le=130)
    unit: Unit
    born: date
    seen: datetime
    id: UUID
    address: Address
    tags: list[Tag] = Field(min_length=1, max_length=4)
    nickname: str | None = None
    kind: Literal["a", "b"] = "a"
    friends: list[Person] = []


SCHEMAS: dict[str, Any] = {
    "pydantic": Person.model_json_schema(),
    "strict-tool": {
        "type": "object",
        "properties": {
            "location": {"type": "string", "description": "City and country"},
            "unit": {"type": ["string", "null"], "enum": ["c", "f", None]},
        },
        "required": ["location", "unit"],
        "additionalProperties": False,
    },
    "unique-multiples": {
        "type": "array",
        "items": {"type": "integer", "multipleOf": 3, "minimum": 10, "maximum": 40},
        "minItems": 2,
        "maxItems": 5,
        "uniqueItems": True,
    },
    "one-of": {
        "oneOf": [
            {"type": "string", "pattern": "^[a-z]+$"},
            {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        ]
    },
    "decimal-steps": {"type": "number", "multipleOf": 0.5, "minimum": -2, "maximum": 2},
    "formats": {
        "type": "object",
        "properties": {
            f: {"type": "string", "format": f} for f in ("date", "date-time", "email", "uuid")
        },
        "required": ["date", "date-time", "email", "uuid"],
    },
    "min-properties": {
        "type": "object",
        "minProperties": 3,
        "additionalProperties": {"type": "integer"},
    },
    "draft7-recursion": {
        "definitions": {
            "node": {
                "type": "object",
                "properties": {
                    "value": {"type": "integer"},
                    "next": {"$ref": "#/definitions/node"},
                },
                "required": ["value"],
            }
        },
        "$ref": "#/definitions/node",
    },
    "tuple": {
        "type": "object",
        "properties": {
            "pair": {
                "type": "array",
                "prefixItems": [{"type": "string"}, {"type": "boolean"}],
                "items": False,
                "minItems": 2,
            }
        },
        "required": ["pair"],
    },
    "all-of": {
        "allOf": [
            {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
            {"properties": {"b": {"type": "boolean"}}, "required": ["b"]},
        ]
    },
    "lengths": {"type": "string", "minLength": 30, "maxLength": 32},
    "untyped": {"properties": {"x": {"minimum": 5}}, "required": ["x"]},
}
WORDS = ("What", "is", "the", "weather", "in", "Paris")


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_values_validate_against_their_schema(name: str) -> None:
    schema = SCHEMAS[name]
    checker = jsonschema.FormatChecker()
    for seed in range(60):
        value = instance(schema, random.Random(seed), WORDS)
        jsonschema.validate(value, schema, format_checker=checker)


def test_a_pydantic_model_reads_the_value_back() -> None:
    schema = Person.model_json_schema()
    people = [Person.model_validate(instance(schema, random.Random(s))) for s in range(50)]
    assert any(p.nickname is not None for p in people)  # optional fields come and go
    assert any(p.nickname is None for p in people)
    assert any(p.friends for p in people)  # the recursion is followed, and ends


def test_the_same_seed_gives_the_same_value() -> None:
    schema = SCHEMAS["pydantic"]
    first, again = (instance(schema, random.Random(5)) for _ in range(2))
    assert first == again
    assert instance(schema, random.Random(6)) != first


def test_place_keys_reuse_the_prompts_capitalised_words() -> None:
    schema = SCHEMAS["strict-tool"]
    assert {instance(schema, random.Random(s), WORDS)["location"] for s in range(20)} == {"Paris"}


@pytest.mark.parametrize(
    "schema",
    [
        False,
        {"$ref": "#/$defs/missing"},
        {"anyOf": [False]},
        {"$ref": "https://example.com/s"},
        {"enum": []},
        {"type": "string", "minLength": 5, "maxLength": 2},
        {"type": "integer", "minimum": 5, "maximum": 2},
        {"type": "array", "minItems": 3, "maxItems": 1},
        {"type": "no-such-type"},
    ],
    ids=[
        "false",
        "dangling-ref",
        "empty-union",
        "remote-ref",
        "empty-enum",
        "string-bounds",
        "number-bounds",
        "array-bounds",
        "not-json-schema",
    ],
)
def test_schemas_without_values_are_refused(schema: Any) -> None:
    with pytest.raises(SchemaError):
        instance(schema, random.Random(0))
