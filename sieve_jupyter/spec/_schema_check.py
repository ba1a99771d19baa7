"""Checking values against JSON Schemas (a bundle's sieve.yaml, a served function's inputs: on
the server, and in the HTTP client before it sends).

fastjsonschema compiles a schema to Python (a few microseconds a check, and a quick import:
`jsonschema` takes seconds to import where its optional format packages are installed). Its
newest draft is 7, so a schema that uses a keyword whose meaning came later (``prefixItems`` of a
tuple, ``$defs`` of a recursive type) is checked with `jsonschema` (draft 2020-12) instead.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any

__all__ = ["SchemaCheck", "SchemaProblem"]

#: keywords whose meaning differs before draft 2020-12
_NEWER_KEYWORDS = frozenset(
    {
        "prefixItems",
        "dependentRequired",
        "dependentSchemas",
        "unevaluatedProperties",
        "unevaluatedItems",
        "$dynamicRef",
        "$anchor",
        "minContains",
        "maxContains",
    }
)


@dataclass(frozen=True)
class SchemaProblem:
    """One way a value breaks the schema: where (keys and indexes), which rule, and what."""

    path: tuple[str | int, ...]
    rule: str
    message: str


def _keywords(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = set(node)
        for value in node.values():
            found |= _keywords(value)
        return found
    if isinstance(node, list):
        found = set()
        for item in node:
            found |= _keywords(item)
        return found
    return set()


class SchemaCheck:
    """A compiled check of one schema; `problems(value)` is empty when the value fits."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema
        self._quick: Any = None
        self._full: Any = None
        if not _keywords(schema) & _NEWER_KEYWORDS:
            import fastjsonschema

            self._quick = fastjsonschema.compile(schema, use_formats=False)

    @classmethod
    def if_available(cls, schema: dict[str, Any]) -> SchemaCheck | None:
        """A check of `schema`, or None where the library it needs is not installed
        (`jsonschema`, which only the serve and export extras bring, for the newer keywords)."""
        needed = "jsonschema" if _keywords(schema) & _NEWER_KEYWORDS else "fastjsonschema"
        if importlib.util.find_spec(needed) is None:
            return None
        return cls(schema)

    def problems(self, value: Any) -> list[SchemaProblem]:
        if self._quick is None:
            return self._full_problems(value)
        import fastjsonschema

        try:
            self._quick(value)
        except fastjsonschema.JsonSchemaValueException as exc:
            return [_describe(exc)]
        return []

    def _full_problems(self, value: Any) -> list[SchemaProblem]:
        if self._full is None:
            import jsonschema

            self._full = jsonschema.Draft202012Validator(self.schema)
        found = []
        for error in self._full.iter_errors(value):
            path = tuple(error.absolute_path)
            if error.validator == "required":
                missing = [n for n in error.validator_value if n not in (error.instance or {})]
                path += tuple(missing[:1])
                found.append(SchemaProblem(path, "required", "Field required"))
            elif error.validator == "additionalProperties":
                allowed = set((error.schema or {}).get("properties", {}))
                extra = sorted(set(error.instance or {}) - allowed)
                found.append(
                    SchemaProblem(
                        path + tuple(extra[:1]),
                        "additionalProperties",
                        "Extra inputs are not permitted",
                    )
                )
            else:
                found.append(SchemaProblem(path, str(error.validator), error.message))
        return found


def _describe(exc: Any) -> SchemaProblem:
    path: tuple[str | int, ...] = tuple(
        int(p) if isinstance(p, str) and p.isdigit() else p for p in exc.path[1:]
    )
    rule, definition, value = exc.rule, exc.rule_definition, exc.value
    if rule == "required" and isinstance(value, dict):
        missing = [n for n in definition if n not in value]
        return SchemaProblem(path + tuple(missing[:1]), rule, "Field required")
    if rule == "additionalProperties" and isinstance(value, dict):
        known = (
            set(exc.definition.get("properties", {})) if isinstance(exc.definition, dict) else set()
        )
        extra = sorted(set(value) - known)
        return SchemaProblem(path + tuple(extra[:1]), rule, "Extra inputs are not permitted")
    if rule == "type":
        return SchemaProblem(path, rule, f"{value!r} is not of type {definition!r}")
    if rule == "enum":
        return SchemaProblem(path, rule, f"{value!r} is not one of {definition!r}")
    if rule == "const":
        return SchemaProblem(path, rule, f"{definition!r} was expected")
    message = str(exc.message)
    name = str(exc.name)
    if message.startswith(name):
        message = (
            "must" + message[len(name) :].split(" must", 1)[-1]
            if " must" in message
            else message[len(name) :].strip()
        )
    return SchemaProblem(path, rule, f"{value!r} {message}".strip())
