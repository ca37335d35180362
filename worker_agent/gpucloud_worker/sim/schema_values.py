"""Seeded values that validate against a JSON Schema: the sim's tool-call arguments and
structured output.

Covers what tool and response schemas use (pydantic's and zod's output, OpenAI's
strict mode): $ref into $defs / definitions, allOf, anyOf / oneOf, const, enum, types
(or lists of types), objects with required and optional properties, arrays with
items / prefixItems and minItems / maxItems / uniqueItems, numeric bounds and
multipleOf, string lengths, the formats scalars.py writes, and patterns as far as a
few candidates match them. Keywords that only narrow further (not, if/then/else,
dependentRequired, contains) are not honoured.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from typing import Any

import jsonschema
import referencing.exceptions

from gpucloud_worker.sim import scalars

Schema = Mapping[str, Any]

# Past this nesting depth optional properties are left out, arrays take their fewest
# items and unions prefer a scalar branch, so recursive schemas (trees) end.
SOFT_DEPTH = 4
# A schema that still nests deeper requires infinite values: it is refused.
HARD_DEPTH = 32
# Share of optional properties a value includes above SOFT_DEPTH.
OPTIONAL_SHARE = 0.5
# Share of nullable values (a "null" type among others) that are not null.
NOT_NULL_SHARE = 0.8
# Items an array takes above its minimum (at most, and within maxItems).
EXTRA_ITEMS = 2
_NESTED = ("object", "array")


class SchemaError(ValueError):
    """No value satisfies the schema, or it points where nothing is."""


def instance(schema: Schema | bool, rng: random.Random, words: Sequence[str] = ()) -> Any:
    """A value valid against `schema`, drawn with `rng`; strings reuse `words` (the
    prompt's, so arguments read as if taken from it) where the key suggests it."""
    root = schema if isinstance(schema, Mapping) else {}
    value = _Values(root, rng, tuple(words)).of(schema, 0, "")
    # The generator honours the common keywords; what it cannot honour, or a schema that
    # contradicts itself (minLength above maxLength, say), shows here, never downstream.
    checked = dict(root)  # `true` admits anything, like {}; `false` never gets here
    validator_class = jsonschema.validators.validator_for(checked)
    try:
        validator_class.check_schema(checked)
        validator = validator_class(checked)
        error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    except jsonschema.exceptions.SchemaError as exc:
        raise SchemaError(f"the schema is not valid JSON Schema: {exc.message}") from None
    except (jsonschema.exceptions.UnknownType, referencing.exceptions.Unresolvable) as exc:
        raise SchemaError(f"the schema cannot be checked: {exc}") from None
    if error is not None:
        raise SchemaError(f"no value the sim can write satisfies it ({error.message})")
    return value


class _Values:
    def __init__(self, root: Schema, rng: random.Random, words: tuple[str, ...]) -> None:
        self.root, self.rng, self.words = root, rng, words

    def of(self, schema: Schema | bool, depth: int, key: str) -> Any:
        if depth > HARD_DEPTH:
            raise SchemaError("the schema nests deeper than any value can")
        if schema is True or schema == {}:
            return scalars.phrase(self.rng, key, self.words)
        if not isinstance(schema, Mapping):
            raise SchemaError("a schema of false admits no value")
        schema = self.flatten(schema)
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            if not schema["enum"]:
                raise SchemaError("an empty enum admits no value")
            return self.rng.choice(list(schema["enum"]))
        branches = schema.get("anyOf") or schema.get("oneOf")
        if branches:
            rest = {k: v for k, v in schema.items() if k not in ("anyOf", "oneOf")}
            return self.of(merge(rest, self.pick(branches, depth)), depth, key)
        kind = self.kind(schema, depth)
        if kind == "object":
            return self.object(schema, depth)
        if kind == "array":
            return self.array(schema, depth, key)
        return scalars.scalar(kind, schema, self.rng, key, self.words)

    def flatten(self, schema: Schema) -> Schema:
        """The schema with its $ref resolved and its allOf merged in."""
        seen = 0
        while "$ref" in schema or "allOf" in schema:
            seen += 1
            if seen > HARD_DEPTH:
                raise SchemaError("the schema's $ref and allOf loop")
            rest = {k: v for k, v in schema.items() if k not in ("$ref", "allOf")}
            if "$ref" in schema:
                rest = merge(self.resolve(str(schema["$ref"])), rest)
            for part in schema.get("allOf", ()):
                rest = merge(rest, self.resolve_part(part))
            schema = rest
        return schema

    def resolve_part(self, part: Schema | bool) -> Schema:
        if part is True:
            return {}
        if not isinstance(part, Mapping):
            raise SchemaError("an allOf of false admits no value")
        return part

    def resolve(self, ref: str) -> Schema:
        """A local JSON pointer ("#", "#/$defs/X", "#/definitions/X/properties/y")."""
        if not ref.startswith("#"):
            raise SchemaError(f"only local $ref are followed, not {ref!r}")
        target: Any = self.root
        for part in filter(None, ref[1:].split("/")):
            name = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, Mapping) or name not in target:
                raise SchemaError(f"$ref {ref!r} points nowhere")
            target = target[name]
        if not isinstance(target, Mapping):
            raise SchemaError(f"$ref {ref!r} is not a schema")
        return target

    def pick(self, branches: Sequence[Schema | bool], depth: int) -> Schema:
        """One branch of a union: null now and then when null is one; deep down, one that
        nests no further if there is one."""
        options = [self.resolve_part(b) for b in branches if b is not False]
        if not options:
            raise SchemaError("a union of false admits no value")
        real = [b for b in options if b.get("type") != "null"]
        if len(real) < len(options):
            if not real or self.null_now(depth):
                return {"type": "null"}
            options = real
        if depth >= SOFT_DEPTH:
            options = [b for b in options if not nests(self.flatten(b))] or options
        return self.rng.choice(options)

    def kind(self, schema: Schema, depth: int) -> str:
        """The JSON type to generate: the one given, one of those given, or inferred."""
        given = schema.get("type")
        if isinstance(given, str):
            return given
        if isinstance(given, list) and given:
            kinds = [str(k) for k in given]
            real = [k for k in kinds if k != "null"]
            if not real or (len(real) < len(kinds) and self.null_now(depth)):
                return "null"
            return self.rng.choice(real)
        return infer_kind(schema)

    def null_now(self, depth: int) -> bool:
        return depth >= SOFT_DEPTH or self.rng.random() >= NOT_NULL_SHARE

    def object(self, schema: Schema, depth: int) -> dict[str, Any]:
        properties: Mapping[str, Any] = schema.get("properties") or {}
        required = [str(name) for name in schema.get("required", ())]
        extra = schema.get("additionalProperties", True)
        chosen = [name for name in properties if name in required or self.optional(depth)]
        chosen += [name for name in required if name not in properties]
        at_least = int(schema.get("minProperties", 0))
        spare = [name for name in properties if name not in chosen]
        while len(chosen) < at_least and spare:
            chosen.append(spare.pop(0))
        at_most = schema.get("maxProperties")
        if at_most is not None:
            optional = [name for name in chosen if name not in required]
            while len(chosen) > int(at_most) and optional:
                chosen.remove(optional.pop())
        value = {
            name: self.of(properties.get(name, _extra_schema(extra)), depth + 1, name)
            for name in chosen
        }
        while len(value) < at_least and extra is not False:
            name = f"{scalars.word(self.rng, self.words)}_{len(value)}"
            value[name] = self.of(_extra_schema(extra), depth + 1, name)
        return value

    def optional(self, depth: int) -> bool:
        return depth < SOFT_DEPTH and self.rng.random() < OPTIONAL_SHARE

    def array(self, schema: Schema, depth: int, key: str) -> list[Any]:
        prefix = list(schema.get("prefixItems") or ())
        items = schema.get("items", True)
        if isinstance(items, list):  # draft 4's tuple form
            prefix, items = items, schema.get("additionalItems", True)
        low = int(schema.get("minItems", 0))
        high = max(low, int(schema.get("maxItems", low + 1 + EXTRA_ITEMS)))
        if items is False:
            high = min(high, len(prefix))
        count = low
        if depth < SOFT_DEPTH:  # at least one item where allowed: an empty list says little
            least = max(low, min(1, high))
            count = self.rng.randint(least, min(high, least + EXTRA_ITEMS))
        unique = bool(schema.get("uniqueItems"))
        values: list[Any] = []
        seen: set[str] = set()
        for _attempt in range(count * 8 if unique else count):
            if len(values) == count:
                break
            at = len(values)
            value = self.of(prefix[at] if at < len(prefix) else items, depth + 1, key)
            mark = json.dumps(value, sort_keys=True)
            if not unique or mark not in seen:
                seen.add(mark)
                values.append(value)
        return values


def merge(base: Schema, extra: Schema) -> dict[str, Any]:
    """Two schemas that must both hold, as one: properties and required combined."""
    merged = {**base, **extra}
    if "properties" in base and "properties" in extra:
        merged["properties"] = {**base["properties"], **extra["properties"]}
    if "required" in base and "required" in extra:
        merged["required"] = list(dict.fromkeys([*base["required"], *extra["required"]]))
    return merged


def nests(schema: Schema) -> bool:
    """Whether every value of `schema` is an object or an array."""
    given = schema.get("type")
    kinds = [given] if isinstance(given, str) else list(given or [infer_kind(schema)])
    return all(kind in _NESTED for kind in kinds)


def infer_kind(schema: Schema) -> str:
    """The type a schema without "type" describes, from its other keywords."""
    if {"properties", "required", "additionalProperties"} & schema.keys():
        return "object"
    if {"items", "prefixItems", "minItems", "maxItems"} & schema.keys():
        return "array"
    if {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"} & schema.keys():
        return "number"
    return "string"


def _extra_schema(extra: object) -> Schema | bool:
    return extra if isinstance(extra, Mapping) else True
