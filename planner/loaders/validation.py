"""The one path from a pydantic ValidationError to an InputError a person can act on: the file,
line and field (or the command-line option) at fault, and what was expected, in plain words."""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from planner.errors import InputError, suggest_name
from planner.loaders.yamlfile import FieldPath, Located


def _clean_loc(loc: tuple[Any, ...], data: Any) -> tuple[Any, ...]:
    """The location as the user wrote it: pydantic inserts union branch names ('str',
    'NetworkEntry', 'function-after[...]') that are not keys of the data; keep only real steps."""
    out: list[Any] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            out.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            out.append(part)
            node = node[part]
        elif isinstance(part, str) and node is not None and not isinstance(node, (dict, list)):
            continue  # a union branch name below a scalar
        elif isinstance(part, str) and (part[:1].isupper() or part in _TYPE_TAGS or "[" in part):
            continue
        else:
            out.append(part)
            node = None
    return tuple(out)


_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "tuple", "none", "literal"}


def _unwrap(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation may hold (through Optional, unions, lists, tuples)."""
    origin = typing.get_origin(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if origin in (typing.Union, types.UnionType, list, tuple, dict, typing.Annotated):
        found: list[type[BaseModel]] = []
        for arg in typing.get_args(annotation):
            found += _unwrap(arg)
        return found
    return []


def _model_at(schema: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel]:
    """The model whose fields are valid at `loc` (for 'did you mean')."""
    model = schema
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            break
        inner = _unwrap(field.annotation)
        if not inner:
            break
        model = inner[0]
    return model


def _describe(error: dict[str, Any]) -> str:
    kind = error["type"]
    value = error.get("input")
    if kind == "missing":
        return "is required"
    if kind in ("finite_number",) or (isinstance(value, float) and not math.isfinite(value)):
        if isinstance(value, float) and math.isnan(value):
            return "NaN is not a number; expected a finite number"
        return f"expected a finite number, got {value!r}"
    message = str(error["msg"]).removeprefix("Value error, ")
    if kind in ("value_error", "assertion_error"):
        return message
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{message[:1].lower()}{message[1:]} (got {shown})"


def to_input_error(exc: ValidationError, *, located: Located | None = None, schema: type[BaseModel] | None = None,
                   base: FieldPath = (), options: Mapping[str, str] | None = None) -> InputError:
    """An InputError for the first problem of `exc` (an unknown key first, as it explains the rest).

    With `located`, the error names the file, line and field path (below `base`); with `options`
    (field name -> command-line option), it names the option the user typed."""
    errors = exc.errors()
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    data = located.data if located is not None else None
    for part in base:
        data = data[part] if isinstance(data, (dict, list)) else None
    loc = _clean_loc(tuple(first["loc"]), data) if located is not None else tuple(p for p in first["loc"] if isinstance(p, (str, int)))
    if options is not None:
        name = str(loc[0]) if loc else ""
        option = options.get(name, f"--{name.replace('_', '-')}" if name else None)
        if first["type"] == "extra_forbidden":
            return InputError(f"unknown setting '{name}'", field=option)
        return InputError(_describe(first), field=option)
    if first["type"] == "extra_forbidden":
        key = str(loc[-1]) if loc else "?"
        allowed = list(_model_at(schema, loc[:-1]).model_fields) if schema is not None else []
        message = f"unknown key '{key}'" + (f"; expected one of {', '.join(allowed)}" if allowed else "")
        suggestion = suggest_name(key, allowed) if allowed else None
    else:
        message = _describe(first)
        if first["type"] == "missing" and loc:
            message = f"missing required key '{loc[-1]}'"
        suggestion = None
    if located is None:
        return InputError(message, field=".".join(map(str, base + loc)) or None, suggestion=suggestion)
    return located.error(base + loc, message, suggestion)
