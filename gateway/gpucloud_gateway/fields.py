"""Request fields declared once: each checks its value and states its JSON Schema.

A request type is a table of fields (`Body`, `Query`); parsing walks the table
and the OpenAPI document is written from it, so what is checked and what is
documented cannot drift apart. The walk visits only the members present and
skips the call for values of a plain type, so a chat request's parse costs about
a microsecond more than the hand-written reads it replaced (about 10 µs in all,
messages included). Nested tables (`Object`, `Items`, `Tagged`) read OpenAI's
objects, arrays and tagged unions the same way, naming the item at fault.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import orjson
from starlette.requests import Request

from gpucloud_gateway import validation as check
from gpucloud_gateway.errors import ApiError, invalid

Schema = dict[str, Any]
# The types of a member that pass unchecked, and its check of a present value.
_Step = tuple[frozenset[type], Callable[[Any], Any]]


class Field(ABC):
    """One named member of a JSON object (or one query parameter)."""

    json_type: ClassVar[Schema] = {}
    # The value of an absent member; immutable, as it is shared by every request.
    absent: ClassVar[Any] = None
    # Values of these exact types need no check (it would return them as they are): the
    # common case skips a call.
    plain: frozenset[type] = frozenset()

    def __init__(
        self,
        name: str,
        description: str,
        *,
        required: bool = False,
        param: str | None = None,
        example: Any = None,
    ) -> None:
        self.name = name
        self.description = description
        self.required = required
        self.param = param or name
        self.example = example

    @abstractmethod
    def check(self, value: Any) -> Any:
        """The present (non-null) `value`, checked; raises a 400 naming `param`."""

    def schema(self) -> Schema:
        out: Schema = {**self.json_type, "description": self.description}
        if not self.required and isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]  # null reads as absent
        if self.example is not None:
            out["examples"] = [self.example]
        return out


class String(Field):
    json_type = {"type": "string"}

    def __init__(self, name: str, description: str, *, enum: Sequence[str] = (), **kw: Any) -> None:
        super().__init__(name, description, **kw)
        self.enum = tuple(enum)
        self.plain = frozenset() if enum else frozenset({str})

    def check(self, value: Any) -> str:
        text = check.text(value, self.param)
        if self.enum and text not in self.enum:
            allowed = " or ".join(f"'{e}'" for e in self.enum)
            raise invalid(
                f"Invalid '{self.param}': expected {allowed}.", self.param, "invalid_value"
            )
        return text

    def schema(self) -> Schema:
        out = super().schema()
        if self.enum:
            out["enum"] = list(self.enum)
        return out


class Integer(Field):
    """An integer in the range of the contract's field that carries it."""

    json_type = {"type": "integer"}

    def __init__(self, name: str, description: str, low: int, high: int, **kw: Any) -> None:
        super().__init__(name, description, **kw)
        self.low, self.high = low, high

    def check(self, value: Any) -> int:
        return check.integer(value, self.param, self.low, self.high)

    def schema(self) -> Schema:
        return {**super().schema(), "minimum": self.low, "maximum": self.high}


class Number(Field):
    json_type = {"type": "number"}
    plain = frozenset({float})

    def check(self, value: Any) -> float:
        return check.decimal(value, self.param)


class Boolean(Field):
    json_type = {"type": "boolean", "default": False}
    absent = False
    plain = frozenset({bool})

    def check(self, value: Any) -> bool:
        return check.flag(value, self.param)


class Flag(Field):
    """A boolean whose absence differs from false (the contract's `optional bool`)."""

    json_type = {"type": "boolean"}
    plain = frozenset({bool})

    def check(self, value: Any) -> bool:
        return check.flag(value, self.param)


class StringList(Field):
    json_type = {"type": "array", "items": {"type": "string"}}
    absent = ()

    def check(self, value: Any) -> list[str]:
        return check.strings(value, self.param)


class DateTime(Field):
    json_type = {"type": "string", "format": "date-time"}

    def check(self, value: Any) -> Any:
        return check.moment(value, self.param)


class _Plan:
    """How to read an object of declared fields: the walk visits only the members present (a
    chat request sets few of its fields), over a copy of the values of absent ones."""

    __slots__ = ("absent", "required", "steps")

    def __init__(self, fields: Sequence[Field]) -> None:
        self.steps: dict[str, _Step] = {f.name: (f.plain, f.check) for f in fields}
        self.absent = {f.name: f.absent for f in fields}
        self.required = tuple((f.name, f.param) for f in fields if f.required)

    def read(self, obj: dict[str, Any]) -> dict[str, Any]:
        """The value of each declared member of `obj`; undeclared members are ignored."""
        for name, param in self.required:
            if obj.get(name) is None:
                raise check.missing(param)
        values = self.absent.copy()
        steps = self.steps
        for name, value in obj.items():
            step = steps.get(name)
            if step is not None and value is not None:
                values[name] = value if type(value) in step[0] else step[1](value)
        return values


def object_schema(fields: Sequence[Field]) -> Schema:
    out: Schema = {"type": "object", "properties": {f.name: f.schema() for f in fields}}
    if required := [f.name for f in fields if f.required]:
        out["required"] = required
    return out


class Object(Field):
    """A nested object of declared fields; reads as their values, or as what `into` makes
    of them (a proto message)."""

    def __init__(
        self,
        name: str,
        description: str,
        fields: Sequence[Field],
        *,
        into: Callable[[dict[str, Any]], Any] | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(name, description, **kw)
        self.fields = tuple(fields)
        self._plan = _Plan(self.fields)
        self._into = into

    def check(self, value: Any) -> Any:
        if not isinstance(value, dict):
            raise check.type_error(self.param, "an object", value)
        values = self._plan.read(value)
        return values if self._into is None else self._into(values)

    def schema(self) -> Schema:
        out = {**super().schema(), **object_schema(self.fields)}
        if not self.required:
            out["type"] = ["object", "null"]
        return out


class Items(Field):
    """An array whose items `item` checks. The item's params are this one's plus `[]`
    (`tools[].function.name`); an error names the item at fault (`tools[2].function.name`)."""

    json_type = {"type": "array"}
    absent = ()

    def __init__(self, name: str, description: str, item: Field, **kw: Any) -> None:
        super().__init__(name, description, **kw)
        self.item = item
        self._template = f"{self.param}[]"

    def check(self, value: Any) -> list[Any]:
        if not isinstance(value, list):
            raise check.type_error(self.param, "an array", value)
        read = self.item.check
        out = []
        for i, item in enumerate(value):
            try:
                out.append(read(item))
            except ApiError as err:
                raise located(err, self._template, f"{self.param}[{i}]") from None
        return out

    def schema(self) -> Schema:
        return {**super().schema(), "items": self.item.schema()}


def located(err: ApiError, template: str, where: str) -> ApiError:
    """`err`, raised for an item declared at `template` (`tools[]`), about the item at `where`."""
    if err.param is not None:
        err.param = err.param.replace(template, where, 1)
    err.message = err.message.replace(template, where, 1)
    return err


class Tagged(Field):
    """An object whose `type` member picks the table of its other members (OpenAI's tagged
    unions); reads as `(type, values)`, or as what `into` makes of them."""

    json_type = {"type": "object"}

    def __init__(
        self,
        name: str,
        description: str,
        variants: Mapping[str, Sequence[Field]],
        *,
        into: Callable[[str, dict[str, Any]], Any] | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(name, description, **kw)
        self.variants = {tag: tuple(fields) for tag, fields in variants.items()}
        self._plans = {tag: _Plan(fields) for tag, fields in self.variants.items()}
        self._into = into

    def check(self, value: Any) -> Any:
        if not isinstance(value, dict):
            raise check.type_error(self.param, "an object", value)
        tag = value.get("type")
        plan = self._plans.get(tag) if isinstance(tag, str) else None
        if plan is None or not isinstance(tag, str):
            where = f"{self.param}.type"
            if tag is None:
                raise check.missing(where)
            allowed = " or ".join(f"'{t}'" for t in self.variants)
            raise invalid(f"Invalid '{where}': expected {allowed}.", where, "invalid_value")
        values = plan.read(value)
        return (tag, values) if self._into is None else self._into(tag, values)

    def schema(self) -> Schema:
        options = []
        for tag, fields in self.variants.items():
            kind = String("type", f"`{tag}`.", required=True, enum=[tag])
            options.append(object_schema([kind, *fields]))
        if not self.required:
            options.append({"type": "null"})
        return {"description": self.description, "anyOf": options}


class Refused(Field):
    """A documented parameter that gpucloud cannot honour. Null, and the `accepted` values
    (those asking for what it does anyway, such as a default), read as absent; any other
    value is a 400 naming it, so that nothing asked for is silently dropped."""

    def __init__(
        self, name: str, description: str, why: str, *, accepted: Sequence[Any] = (), **kw: Any
    ) -> None:
        super().__init__(name, description, **kw)
        self.why = why
        self.accepted = tuple(accepted)

    def check(self, value: Any) -> None:
        # `type(...) is` first: True == 1 and False == 0 to Python, not to JSON.
        if not any(type(value) is type(a) and value == a for a in self.accepted):
            raise invalid(
                f"The '{self.param}' parameter is not supported: {self.why}.",
                self.param,
                "unsupported_parameter",
            )

    def schema(self) -> Schema:
        allowed = ", ".join(orjson.dumps(a).decode() for a in (*self.accepted, None))
        return {
            "description": f"{self.description} Not supported ({self.why}): only {allowed} "
            "is accepted, anything else is a 400.",
            "enum": [*self.accepted, None],
        }


class JsonText(Field):
    """Any JSON object (a JSON Schema), passed on as JSON text with its keys in order."""

    json_type = {"type": "object", "additionalProperties": True}

    def check(self, value: Any) -> str:
        if not isinstance(value, dict):
            raise check.type_error(self.param, "an object", value)
        return orjson.dumps(value).decode()


class StringMap(Field):
    """An object of string values."""

    json_type = {"type": "object", "additionalProperties": {"type": "string"}}

    def check(self, value: Any) -> dict[str, str]:
        if not isinstance(value, dict):
            raise check.type_error(self.param, "an object", value)
        for key, item in value.items():
            if not isinstance(item, str):
                raise check.type_error(f"{self.param}.{key}", "a string", item)
        return value


class Body:
    """A JSON request body: its fields and an example. Only declared names can be looked up
    in what `parse` returns, so no member is read that the document does not show."""

    def __init__(
        self, title: str, description: str, fields: Sequence[Field], example: dict[str, Any]
    ) -> None:
        self.title = title
        self.description = description
        self.fields = tuple(fields)
        self.example = example
        self._plan = _Plan(self.fields)

    def parse(self, raw: bytes) -> dict[str, Any]:
        return self._plan.read(check.json_object(raw))

    def schema(self) -> Schema:
        return {
            "title": self.title,
            "description": self.description,
            **object_schema(self.fields),
            "examples": [self.example],
        }


class Query:
    """Query parameters: text, made integers for Integer fields, then checked the same way."""

    def __init__(self, fields: Sequence[Field]) -> None:
        self.fields = tuple(fields)
        self._plan = _Plan(self.fields)

    def parse(self, request: Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query_params)
        for f in self.fields:
            if isinstance(f, Integer) and (given := params.get(f.name)) is not None:
                try:
                    params[f.name] = int(given)
                except ValueError:
                    raise check.type_error(f.param, "an integer", given) from None
        return self._plan.read(params)

    def parameters(self) -> list[Schema]:
        """The OpenAPI Parameter objects."""
        return [
            {
                "name": f.name,
                "in": "query",
                "required": f.required,
                "description": f.description,
                "schema": _query_schema(f.schema()),
            }
            for f in self.fields
        ]


def _query_schema(schema: Schema) -> Schema:
    """A field's schema as a query parameter's: no null (a parameter is absent or text)."""
    out = {k: v for k, v in schema.items() if k != "description"}
    if isinstance(out.get("type"), list):
        out["type"] = out["type"][0]
    return out
