"""JSON Schema helpers for forms: resolve `$ref`/Optional, describe a field, validate a value.

The input schema comes from pydantic (`TypeAdapter(...).json_schema()`), so only the keywords it
emits for function parameters are handled; anything else is accepted rather than rejected, since
the worker's own type checks remain the last word.
"""

from __future__ import annotations

import math
import re
from typing import Any

from sieve_jupyter._errors import InputError

__all__ = ["FormInputError", "describe", "resolve", "split_optional", "validate"]

Schema = dict[str, Any]


class FormInputError(InputError):
    """A form field holds a value the function cannot take; nothing was pushed.

    Attributes:
        field: the parameter name at fault.
        problem: what is wrong with the value.
        fix: one sentence telling the user what to enter instead.
    """


def resolve(schema: Schema, root: Schema) -> Schema:
    """Follow a local `$ref` (``#/$defs/Name``) and merge the referring schema's own keywords."""
    seen = 0
    while "$ref" in schema and seen < 20:  # a cycle guard; pydantic refs are shallow
        ref = schema["$ref"]
        target: Any = root
        if isinstance(ref, str) and ref.startswith("#/"):
            for part in ref[2:].split("/"):
                target = target.get(part, {}) if isinstance(target, dict) else {}
        else:
            target = {}
        merged = {k: v for k, v in schema.items() if k != "$ref"}
        schema = {**target, **merged}
        seen += 1
    # pydantic wraps a lone $ref with siblings as allOf: [ {$ref} ]
    all_of = schema.get("allOf")
    if isinstance(all_of, list) and len(all_of) == 1 and isinstance(all_of[0], dict):
        inner = resolve(all_of[0], root)
        schema = {**inner, **{k: v for k, v in schema.items() if k != "allOf"}}
    return schema


def split_optional(schema: Schema, root: Schema) -> tuple[Schema, bool]:
    """Return ``(inner schema, nullable)`` for ``anyOf: [X, {type: null}]`` (``Optional[X]``)."""
    schema = resolve(schema, root)
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if not isinstance(options, list):
            continue
        non_null = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
        if len(non_null) < len(options):
            outer = {k: v for k, v in schema.items() if k != key}
            if len(non_null) == 1 and isinstance(non_null[0], dict):
                return {**resolve(non_null[0], root), **outer}, True
            return {**outer, key: non_null}, True
    types = schema.get("type")
    if isinstance(types, list) and "null" in types:
        rest = [t for t in types if t != "null"]
        return {**schema, "type": rest[0] if len(rest) == 1 else rest}, True
    return schema, False


def describe(schema: Schema, root: Schema) -> str:
    """A short human type name for a schema, e.g. ``int (0 ≤ x ≤ 10)`` or ``list[str]``."""
    schema, nullable = split_optional(schema, root)
    text = _describe_plain(schema, root)
    return f"{text} | None" if nullable else text


def _describe_plain(schema: Schema, root: Schema) -> str:
    if "x-sieve-type" in schema:
        return f"sieve.{schema['x-sieve-type']}"
    if "x-python-type" in schema:
        return str(schema["x-python-type"])
    if "enum" in schema:
        return "one of " + ", ".join(repr(v) for v in schema["enum"])
    if "const" in schema:
        return repr(schema["const"])
    kind = schema.get("type")
    names = {"integer": "int", "number": "float", "string": "str", "boolean": "bool"}
    if kind in names:
        text = names[kind]
        bounds = _bounds_text(schema)
        return f"{text} ({bounds})" if bounds else text
    if kind == "array":
        items = schema.get("items")
        inner = describe(items, root) if isinstance(items, dict) else "Any"
        return f"list[{inner}]"
    if kind == "object":
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            return f"dict[str, {describe(extra, root)}]"
        return "dict"
    options = schema.get("anyOf") or schema.get("oneOf")
    if isinstance(options, list):
        return " | ".join(describe(o, root) for o in options if isinstance(o, dict))
    return "any JSON value"


def _bounds_text(schema: Schema) -> str:
    parts = []
    low = schema.get("minimum", schema.get("exclusiveMinimum"))
    high = schema.get("maximum", schema.get("exclusiveMaximum"))
    if low is not None:
        parts.append(f"{low} {'<' if 'exclusiveMinimum' in schema else '≤'} x")
    if high is not None:
        op = "<" if "exclusiveMaximum" in schema else "≤"
        parts[:] = [f"{parts[0]} {op} {high}"] if parts else [f"x {op} {high}"]
    if "minLength" in schema:
        parts.append(f"at least {schema['minLength']} chars")
    if "maxLength" in schema:
        parts.append(f"at most {schema['maxLength']} chars")
    return ", ".join(parts)


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
    "array": (list, tuple),
    "object": (dict,),
}


def validate(value: Any, schema: Schema, root: Schema, path: str = "") -> list[str]:
    """Check a JSON-like value against `schema`; return the problems found (empty when valid).

    Each problem names the location inside the value (``[2]``, ``.key``) so the message points at
    what to change.
    """
    schema = resolve(schema, root)
    where = f"{path}: " if path else ""
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            results = [validate(value, o, root, path) for o in options if isinstance(o, dict)]
            if results and all(results):
                return min(results, key=len)
    if "const" in schema and value != schema["const"]:
        return [f"{where}must be {schema['const']!r}"]
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(repr(v) for v in schema["enum"])
        return [f"{where}{value!r} is not one of {allowed}"]
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind] if isinstance(kind, str) else []
    if kinds and not any(_is_type(value, k) for k in kinds):
        names = " or ".join(kinds)
        return [f"{where}expected {names}, got {type(value).__name__} {value!r}"[:200]]
    problems: list[str] = []
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        problems += _check_number(value, schema, where)
    if isinstance(value, str):
        problems += _check_string(value, schema, where)
    if isinstance(value, (list, tuple)):
        problems += _check_array(list(value), schema, root, path)
    if isinstance(value, dict):
        problems += _check_object(value, schema, root, path)
    return problems


def _is_type(value: Any, kind: str) -> bool:
    if kind == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer()
        )
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    expected = _JSON_TYPES.get(kind)
    return True if expected is None else isinstance(value, expected)


def _check_number(value: float, schema: Schema, where: str) -> list[str]:
    if isinstance(value, float) and not math.isfinite(value):
        return [f"{where}must be a finite number"]
    checks = (
        ("minimum", "≥"),
        ("exclusiveMinimum", ">"),
        ("maximum", "≤"),
        ("exclusiveMaximum", "<"),
    )
    problems = []
    for key, op in checks:
        bound = schema.get(key)
        if isinstance(bound, (int, float)) and not _compare(value, op, bound):
            problems.append(f"{where}{value} is out of range: must be {op} {bound}")
    step = schema.get("multipleOf")
    if isinstance(step, (int, float)) and step > 0:
        ratio = value / step
        if abs(ratio - round(ratio)) > 1e-9:
            problems.append(f"{where}{value} is not a multiple of {step}")
    return problems


def _compare(value: float, op: str, bound: float) -> bool:
    return {"≥": value >= bound, ">": value > bound, "≤": value <= bound, "<": value < bound}[op]


def _check_size(size: int, schema: Schema, low_key: str, high_key: str, said: str) -> list[str]:
    """Problems with a length against the schema's bounds under `low_key` / `high_key`;
    `said` states the length ("is 3 characters long")."""
    problems = []
    low, high = schema.get(low_key), schema.get(high_key)
    if isinstance(low, int) and size < low:
        problems.append(f"{said}; needs at least {low}")
    if isinstance(high, int) and size > high:
        problems.append(f"{said}; allows at most {high}")
    return problems


def _check_string(value: str, schema: Schema, where: str) -> list[str]:
    count = len(value)
    problems = _check_size(
        count,
        schema,
        "minLength",
        "maxLength",
        f"{where}is {count} character{'' if count == 1 else 's'} long",
    )
    pattern = schema.get("pattern")
    if isinstance(pattern, str):
        try:
            if re.search(pattern, value) is None:
                problems.append(f"{where}does not match the pattern {pattern!r}")
        except re.error:
            pass  # a pattern Python cannot compile is left to the worker's own validation
    return problems


def _check_array(value: list[Any], schema: Schema, root: Schema, path: str) -> list[str]:
    where = f"{path}: " if path else ""
    problems = _check_size(
        len(value),
        schema,
        "minItems",
        "maxItems",
        f"{where}has {len(value)} item{'' if len(value) == 1 else 's'}",
    )
    prefix = schema.get("prefixItems")
    items = schema.get("items")
    for index, item in enumerate(value):
        item_schema: Any = None
        if isinstance(prefix, list) and index < len(prefix):
            item_schema = prefix[index]
        elif isinstance(items, dict):
            item_schema = items
        if isinstance(item_schema, dict):
            problems += validate(item, item_schema, root, f"{path}[{index}]")
        if len(problems) >= 5:  # enough to act on; a 10,000-item list must not flood the form
            break
    return problems


def _check_object(value: dict[str, Any], schema: Schema, root: Schema, path: str) -> list[str]:
    where = f"{path}: " if path else ""
    problems = []
    props = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
    assert isinstance(props, dict)
    for name in schema.get("required", []) or []:
        if name not in value:
            problems.append(f"{where}missing the key {name!r}")
    extra = schema.get("additionalProperties")
    for key, item in value.items():
        if not isinstance(key, str):
            problems.append(f"{where}keys must be strings, got {key!r}")
        elif key in props and isinstance(props[key], dict):
            problems += validate(item, props[key], root, f"{path}.{key}")
        elif isinstance(extra, dict):
            problems += validate(item, extra, root, f"{path}.{key}")
        elif extra is False:
            problems.append(f"{where}unexpected key {key!r}")
        if len(problems) >= 5:
            break
    return problems
