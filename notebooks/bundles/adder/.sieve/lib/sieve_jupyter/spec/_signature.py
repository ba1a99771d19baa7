"""A signature as the reader wrote it, for listings: ``(video: sieve.Video, n: int = 3) -> str``.

`str(inspect.signature(f))` quotes postponed annotations (``'int'``) and spells types by their
full module path; this shows both the way a notebook cell spells them.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from types import UnionType
from typing import Any

__all__ = ["format_signature"]


def _show(annotation: Any) -> str:
    """An annotation as a reader writes it: ``list[File]``, ``int | None``, ``Literal['a']``."""
    if isinstance(annotation, str):
        return annotation
    if annotation is None or annotation is type(None):
        return "None"
    if annotation is Ellipsis:
        return "..."
    if isinstance(annotation, list):  # Callable's argument list
        return f"[{', '.join(_show(a) for a in annotation)}]"
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        extras = [_show_metadata(m) for m in annotation.__metadata__]
        return f"Annotated[{', '.join([_show(args[0]), *extras])}]"
    if origin is typing.Literal:
        return f"Literal[{', '.join(repr(a) for a in args)}]"
    if origin is typing.Union or origin is UnionType:
        return " | ".join(_show(a) for a in args)
    if origin is not None and args:
        name = getattr(annotation, "_name", None) or getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join(_show(a) for a in args)}]"
    if isinstance(annotation, type):
        if annotation.__module__.startswith("sieve_jupyter"):
            return f"sieve.{annotation.__name__}"
        return annotation.__qualname__
    return inspect.formatannotation(annotation).replace("typing.", "")


def _show_metadata(meta: Any) -> str:
    """``Field(ge=0, le=10)`` rather than pydantic's full ``FieldInfo(...)`` repr."""
    from pydantic.fields import FieldInfo

    if not isinstance(meta, FieldInfo):
        return repr(meta)
    parts = [
        ", ".join(f"{f.name}={getattr(m, f.name)!r}" for f in dataclasses.fields(m))
        if dataclasses.is_dataclass(m) and not isinstance(m, type)
        else repr(m)
        for m in meta.metadata
    ]
    if meta.description:
        parts.append(f"description={meta.description!r}")
    return f"Field({', '.join(parts)})"


class _Shown:
    """Shows an annotation through `_show` inside `inspect.Signature`'s text."""

    __slots__ = ("text",)

    def __init__(self, annotation: Any) -> None:
        self.text = _show(annotation)

    def __repr__(self) -> str:
        return self.text


def format_signature(signature: inspect.Signature) -> str:
    """``(x1: int, x2: int = 1) -> int``, readable whether or not annotations are strings."""
    empty = inspect.Parameter.empty
    params = [
        p if p.annotation is empty else p.replace(annotation=_Shown(p.annotation))
        for p in signature.parameters.values()
    ]
    ret = signature.return_annotation
    return str(
        signature.replace(parameters=params, return_annotation=ret if ret is empty else _Shown(ret))
    )
