"""JSON Schema for a function's inputs and output, from its type hints, defaults and docstring.

pydantic does the type work (`create_model` over the parameters). On top of it:

- `sieve.File` (and `Image`/`Video`/`Audio`) and `pathlib.Path` become
  ``{"type": "string", "format": "sieve-file", "x-sieve-type": "File"}`` so a form can offer an
  upload; types pydantic cannot describe (numpy arrays, PIL images, any class) become
  ``{"x-python-type": "numpy.ndarray"}`` instead of failing; an unannotated parameter is ``{}``.
- Descriptions come from ``:param x:`` (reST), ``Args:`` (Google) or ``Parameters`` (numpy)
  docstring sections; the output's from ``:returns:`` / ``Returns:`` / ``Yields:``.
- ``$ref``s are inlined (kept in ``$defs`` only for recursive types), so a consumer sees
  ``enum``, ``anyOf`` and constraints right on each property.
- ``*args`` and ``**kwargs`` cannot be form fields: they are not properties. ``**kwargs`` makes
  ``additionalProperties`` its value schema (``true`` unannotated); without it
  ``additionalProperties`` is ``false``. ``*args`` is recorded as
  ``"x-var-positional": {"name": ..., "items": ...}``. Positional-only parameters are listed in
  ``"x-positional-only"`` so a caller knows to pass them by position.
"""

from __future__ import annotations

import collections.abc
import contextlib
import inspect
import typing
import warnings
from collections.abc import Callable
from typing import Any

from pydantic import ConfigDict, Field, create_model
from pydantic.fields import FieldInfo
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue, PydanticJsonSchemaWarning
from pydantic_core import PydanticUndefined, core_schema

from sieve_jupyter._errors import SpecError
from sieve_jupyter.spec._docstring import parse_docstring

__all__ = [
    "FILE_FORMAT",
    "RESERVED_INPUTS",
    "inputs_schema",
    "output_schema",
    "resolve_hints",
    "type_schema",
]

#: ``format`` of a string that is a file (a path or URL) in a schema.
FILE_FORMAT = "sieve-file"
#: Input names Sieve reserves for itself.
RESERVED_INPUTS = frozenset({"webhooks"})

_CONFIG = ConfigDict(arbitrary_types_allowed=True)
_MEDIA_TYPES = {"Image": "image/*", "Video": "video/*", "Audio": "audio/*"}
_STREAM_ORIGINS = {
    collections.abc.Iterator,
    collections.abc.Iterable,
    collections.abc.Generator,
    collections.abc.AsyncIterator,
    collections.abc.AsyncIterable,
    collections.abc.AsyncGenerator,
}


def _python_type_name(obj: Any) -> str:
    if isinstance(obj, type):
        module = obj.__module__
        return obj.__qualname__ if module == "builtins" else f"{module}.{obj.__qualname__}"
    return str(obj) if isinstance(obj, str) else repr(obj)


def _file_schema(cls: type) -> dict[str, Any] | None:
    from sieve_jupyter.runtime import File  # stdlib-only

    if isinstance(cls, type) and issubclass(cls, File):
        schema: dict[str, Any] = {
            "type": "string",
            "format": FILE_FORMAT,
            "x-sieve-type": cls.__name__,
        }
        if cls.__name__ in _MEDIA_TYPES:
            schema["contentMediaType"] = _MEDIA_TYPES[cls.__name__]
        return schema
    return None


class _SchemaGenerator(GenerateJsonSchema):
    """pydantic's generator, describing instead of refusing what JSON Schema cannot express."""

    def is_instance_schema(self, schema: core_schema.IsInstanceSchema) -> JsonSchemaValue:
        cls = schema["cls"]
        return _file_schema(cls) or {"x-python-type": _python_type_name(cls)}

    def handle_invalid_for_json_schema(self, schema: Any, error_info: str) -> JsonSchemaValue:
        kind = schema.get("type", "value")
        cls = schema.get("cls")
        return {"x-python-type": _python_type_name(cls) if cls is not None else str(kind)}


def _opaque(annotation: Any) -> Any:
    """`Any`, described in the schema as the Python type pydantic could not handle."""
    from pydantic import WithJsonSchema

    return typing.Annotated[Any, WithJsonSchema({"x-python-type": _python_type_name(annotation)})]


# --- schemas ----------------------------------------------------------------------------------


def resolve_hints(func: Callable[..., Any]) -> dict[str, Any]:
    """Type hints with `Annotated` kept; annotations that cannot be resolved stay as strings."""
    try:
        return typing.get_type_hints(func, include_extras=True)
    except Exception:  # a name the notebook has not defined (yet): resolve one by one
        pass
    hints: dict[str, Any] = {}
    globalns = getattr(func, "__globals__", {})
    for name, annotation in getattr(func, "__annotations__", {}).items():
        if isinstance(annotation, str):
            with contextlib.suppress(Exception):
                annotation = eval(annotation, globalns)  # noqa: S307 - the user's own annotation
        hints[name] = annotation
    return hints


def _field_info(
    annotation: Any, default: Any, alias: str, description: str
) -> tuple[Any, FieldInfo]:
    extra: dict[str, Any] = {"alias": alias}
    if description and not _has_description(annotation):
        extra["description"] = description
    if isinstance(default, FieldInfo):  # def f(x: int = Field(3, ge=0))
        if default.description:
            extra.pop("description", None)
        return annotation, FieldInfo.merge_field_infos(default, Field(**extra))
    value = PydanticUndefined if default is inspect.Parameter.empty else default
    return annotation, Field(value, **extra)


def _has_description(annotation: Any) -> bool:
    if typing.get_origin(annotation) is typing.Annotated:
        return any(isinstance(m, FieldInfo) and m.description for m in annotation.__metadata__)
    return False


def _model_schema(fields: dict[str, tuple[Any, FieldInfo]]) -> dict[str, Any]:
    model = create_model("Inputs", __config__=_CONFIG, **fields)  # type: ignore[call-overload]
    with warnings.catch_warnings():
        # a default JSON cannot hold (an array, an object) is left out of the schema, not an error
        warnings.simplefilter("ignore", PydanticJsonSchemaWarning)
        schema: dict[str, Any] = model.model_json_schema(
            by_alias=True, schema_generator=_SchemaGenerator
        )
    return schema


def _safe_fields(fields: dict[str, tuple[Any, FieldInfo]]) -> dict[str, Any]:
    """The model schema; a field whose type pydantic rejects is described as opaque instead."""
    try:
        return _model_schema(fields)
    except Exception:
        pass
    safe: dict[str, tuple[Any, FieldInfo]] = {}
    for key, (annotation, info) in fields.items():
        try:
            _model_schema({key: (annotation, info)})
            safe[key] = (annotation, info)
        except Exception:
            safe[key] = (_opaque(annotation), info)
    return _model_schema(safe)


def _inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """Replace ``$ref`` by its definition where not recursive; keep ``$defs`` for the rest."""
    defs: dict[str, Any] = schema.pop("$defs", {})
    kept: dict[str, Any] = {}

    def walk(node: Any, stack: tuple[str, ...]) -> Any:
        if isinstance(node, list):
            return [walk(item, stack) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            name = ref[len("#/$defs/") :]
            if name in stack:  # recursive: keep the reference
                if name not in kept:
                    kept[name] = None
                    kept[name] = walk(defs[name], (*stack, name))
                return node
            target = walk(defs[name], (*stack, name))
            siblings = {k: walk(v, stack) for k, v in node.items() if k != "$ref"}
            return {**target, **siblings}
        return {k: walk(v, stack) for k, v in node.items()}

    result: dict[str, Any] = walk(schema, ())
    if kept:
        result["$defs"] = kept
    return result


def _mark_paths(node: Any) -> None:
    """pydantic describes `pathlib.Path` as ``format: path``; make it a file like `sieve.File`."""
    if isinstance(node, list):
        for item in node:
            _mark_paths(item)
    elif isinstance(node, dict):
        if node.get("type") == "string" and node.get("format") == "path":
            node["format"] = FILE_FORMAT
            node["x-sieve-type"] = "Path"
        for value in node.values():
            _mark_paths(value)


def _strip_auto_titles(properties: dict[str, Any]) -> None:
    for name, prop in properties.items():
        if isinstance(prop, dict) and prop.get("title") == name.replace("_", " ").title():
            del prop["title"]


def _finish(schema: dict[str, Any]) -> dict[str, Any]:
    schema.pop("title", None)
    schema = _inline_refs(schema)
    _mark_paths(schema)
    return schema


def inputs_schema(
    func: Callable[..., Any], *, skip_self: bool = False, doc: str | None = None
) -> dict[str, Any]:
    """The JSON Schema object of `func`'s parameters (``self`` dropped when `skip_self`).

    Args:
        func: the function (or ``__predict__``) to describe.
        skip_self: drop the first parameter (a method's ``self``).
        doc: the docstring(s) to read descriptions from (default: `func`'s own).

    Raises:
        SpecError: a parameter uses a name Sieve reserves (``webhooks``).
    """
    signature = inspect.signature(func)
    params = list(signature.parameters.values())
    if (
        skip_self
        and params
        and params[0].kind
        in (
            inspect.Parameter.POSITIONAL_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        )
    ):
        params = params[1:]
    hints = resolve_hints(func)
    descriptions, _ = parse_docstring(doc if doc is not None else inspect.getdoc(func))

    fields: dict[str, tuple[Any, FieldInfo]] = {}
    names: dict[str, str] = {}
    positional_only: list[str] = []
    var_positional: inspect.Parameter | None = None
    var_keyword: inspect.Parameter | None = None
    for i, param in enumerate(params):
        if param.name in RESERVED_INPUTS:
            raise SpecError(
                f"inputs.{param.name}",
                f"{param.name!r} is reserved by Sieve and cannot be an input name.",
                f"rename the parameter, e.g. '{param.name}_list'.",
            )
        if param.kind is inspect.Parameter.VAR_POSITIONAL:
            var_positional = param
            continue
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            var_keyword = param
            continue
        if param.kind is inspect.Parameter.POSITIONAL_ONLY:
            positional_only.append(param.name)
        key = f"p{i}"  # internal names dodge BaseModel attributes ("json", "model_*", "_x")
        names[key] = param.name
        annotation = hints.get(param.name, Any)
        if isinstance(annotation, str):
            annotation = _opaque(annotation)
        fields[key] = _field_info(
            annotation, param.default, param.name, descriptions.get(param.name, "")
        )

    schema = _safe_fields(fields)
    schema.setdefault("properties", {})
    schema.setdefault("required", [])
    _strip_auto_titles(schema["properties"])
    if var_keyword is not None:
        annotation = hints.get(var_keyword.name, Any)
        schema["additionalProperties"] = type_schema(annotation) if annotation is not Any else True
    else:
        schema["additionalProperties"] = False
    if var_positional is not None:
        annotation = hints.get(var_positional.name, Any)
        schema["x-var-positional"] = {"name": var_positional.name, "items": type_schema(annotation)}
    if positional_only:
        schema["x-positional-only"] = positional_only
    return _finish(schema)


def type_schema(annotation: Any, *, description: str = "") -> dict[str, Any]:
    """The JSON Schema of one type (``{}`` for `Any`)."""
    if isinstance(annotation, str):
        annotation = _opaque(annotation)
    info = Field(alias="value", description=description or None)
    schema = _safe_fields({"value": (annotation, info)})
    prop: dict[str, Any] = dict(schema.get("properties", {}).get("value", {}))
    prop.pop("title", None)
    if "$defs" in schema:
        prop["$defs"] = schema["$defs"]
    return _finish(prop)


def _stream_item(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin in _STREAM_ORIGINS:
        args = typing.get_args(annotation)
        return args[0] if args else Any
    return annotation


def output_schema(
    func: Callable[..., Any], *, is_generator: bool = False, doc: str | None = None
) -> dict[str, Any]:
    """The JSON Schema of `func`'s return value; for a generator, of each item it yields."""
    hints = resolve_hints(func)
    _, description = parse_docstring(doc if doc is not None else inspect.getdoc(func))
    if "return" not in hints:
        return {"description": description} if description else {}
    annotation = hints["return"]
    if is_generator:
        annotation = _stream_item(annotation)
    if annotation is None or annotation is type(None):
        schema: dict[str, Any] = {"type": "null"}
        if description:
            schema["description"] = description
        return schema
    return type_schema(annotation, description=description)
