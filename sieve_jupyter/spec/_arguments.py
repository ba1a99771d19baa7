"""Arguments checked against a function's type hints before a job is queued.

`ArgumentChecker.check(args, kwargs)` binds a call to the signature and validates each hinted
argument with pydantic in lax mode, the coercions Sieve applies to inputs: an int where a float
is declared, a path or URL string where a `sieve.File` (or `Image`, `Video`, `Audio`) is. It
returns the arguments to send, coerced; a value that cannot be the declared type raises
`InputError` naming the parameter, what was given and what is expected. Parameters without a
hint (or hinted `Any`) are not checked.

A warm `.run()` costs tens of microseconds, so the common case is kept to a few: the binding of
a call shape (how many positional arguments, which keywords) is worked out once, and an argument
whose type is exactly the hinted builtin skips pydantic.
"""

from __future__ import annotations

import inspect
import os
import typing
from collections.abc import Callable
from typing import Any

from sieve_jupyter._errors import InputError
from sieve_jupyter.spec._schema import resolve_hints

__all__ = ["ArgumentChecker"]

#: hints whose exact type needs no validation (an int for a float is converted, as pydantic does)
_EXACT = (int, float, str, bool, bytes)


class _Parameter:
    """How one hinted parameter is checked."""

    __slots__ = ("_adapter", "_hint", "exact", "name")

    def __init__(self, name: str, hint: Any, adapter: Any) -> None:
        self.name = name
        self._hint = hint
        self._adapter = adapter
        self.exact: tuple[type, ...] = (hint,) if hint in _EXACT else ()

    def validate(self, value: Any, label: str) -> Any:
        """The value to send (coerced where the hint allows). Raises `InputError`."""
        from pydantic import ValidationError

        try:
            return self._adapter.validate_python(value)
        except ValidationError as exc:
            error = exc.errors(include_url=False)[0]
            where = "".join(f"[{part!r}]" for part in error["loc"] if part != "function-before")
            given = error.get("input", value)
            raise InputError(
                f"{label}{where}",
                f"expected {describe(self._hint)}, got {type(given).__name__} {_short(given)}"
                f" ({error['msg'][:1].lower()}{error['msg'][1:]}).",
                f"pass {describe(self._hint)}.",
            ) from None


class ArgumentChecker:
    """Checks calls of one function (or a model's `__predict__`) against its hints."""

    def __init__(self, name: str, func: Callable[..., Any], *, drop_first: bool = False) -> None:
        self._name = name
        signature = inspect.signature(func)
        parameters = list(signature.parameters.values())
        if drop_first:  # a model's `self`
            parameters = parameters[1:]
        self.signature = signature.replace(parameters=parameters)
        hints = resolve_hints(func)
        self._checks: dict[str, _Parameter] = {}
        for p in parameters:
            hint = hints.get(p.name, Any)
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or hint is Any or isinstance(hint, str):
                continue  # unchecked: no hint, Any, or a name that does not resolve
            adapter = _adapter_or_none(hint)
            if adapter is not None:
                self._checks[p.name] = _Parameter(p.name, hint, adapter)
        #: call shape -> the checked parameters of each positional argument and keyword
        self._shapes: dict[tuple[int, tuple[str, ...]], list[tuple[int | str, _Parameter]]] = {}

    def check(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Bind and validate one call; returns the arguments to send.

        Raises:
            TypeError: the arguments do not fit the signature.
            InputError: an argument cannot be its parameter's type.
        """
        shape = (len(args), tuple(kwargs))
        checks = self._shapes.get(shape)
        if checks is None:
            checks = self._shapes[shape] = self._bind(args, kwargs)
        coerced_args: list[Any] | None = None
        for where, check in checks:
            value = args[where] if isinstance(where, int) else kwargs[where]
            if type(value) in check.exact:
                continue
            new = check.validate(value, check.name)
            if new is value:
                continue
            if isinstance(where, int):
                if coerced_args is None:
                    coerced_args = list(args)
                coerced_args[where] = new
            else:
                kwargs = {**kwargs, where: new}
        return (tuple(coerced_args) if coerced_args is not None else args), kwargs

    def _bind(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> list[tuple[int | str, _Parameter]]:
        try:
            self.signature.bind(*args, **kwargs)  # (only proves the call fits)
        except TypeError as exc:
            raise TypeError(f"{self._name}{self.signature}: {exc}") from None
        positional = [
            p.name
            for p in self.signature.parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        checks: list[tuple[int | str, _Parameter]] = [
            (index, self._checks[name])
            for index, name in enumerate(positional[: len(args)])  # (the rest go to *args)
            if name in self._checks
        ]
        checks += [(key, self._checks[key]) for key in kwargs if key in self._checks]
        return checks


def describe(hint: Any) -> str:
    """A hint as a person would say it: ``int``, ``list[int] | None``, ``a sieve.File (or a
    path or URL string)``."""
    from sieve_jupyter.runtime import File

    if isinstance(hint, type) and issubclass(hint, File):
        return f"a sieve.{hint.__name__} (or a path or URL string)"
    return _name(hint)


def _name(hint: Any) -> str:
    from sieve_jupyter.runtime import File

    if hint is type(None):
        return "None"
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if isinstance(hint, type) and origin is None:  # (Python 3.10 takes `list[int]` for a type)
        if issubclass(hint, File):
            return f"sieve.{hint.__name__}"
        module = hint.__module__
        return hint.__qualname__ if module == "builtins" else f"{module}.{hint.__qualname__}"
    if origin is typing.Annotated:
        return _name(args[0])
    if origin is typing.Union or type(hint).__name__ == "UnionType":
        return " | ".join(_name(a) for a in args)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin is not None and args:
        inner = ", ".join("..." if a is Ellipsis else _name(a) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    return str(hint).replace("typing.", "")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _adapter_or_none(hint: Any) -> Any:
    try:
        return _adapter(hint)
    except Exception:  # noqa: BLE001 - a hint pydantic cannot check is left unchecked
        return None


def _adapter(hint: Any) -> Any:
    from pydantic import ConfigDict, TypeAdapter

    return TypeAdapter(_with_files(hint), config=ConfigDict(arbitrary_types_allowed=True))


def _with_files(hint: Any) -> Any:
    """`hint` with each `sieve.File` class in it also accepting a path or URL string."""
    from pydantic import BeforeValidator

    from sieve_jupyter.runtime import File

    if isinstance(hint, type) and issubclass(hint, File):
        return typing.Annotated[hint, BeforeValidator(lambda v, cls=hint: _as_file(cls, v))]
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is None or not args:
        return hint
    if origin is typing.Annotated:
        # (subscripted with a tuple: `Annotated.__class_getitem__` is gone in Python 3.13)
        params = (_with_files(args[0]), *hint.__metadata__)
        return typing.Annotated[params]
    if origin is typing.Literal:
        return hint
    adapted = tuple(_with_files(a) if a is not Ellipsis else a for a in args)
    if adapted == args:
        return hint
    if origin in (typing.Union,) or type(hint).__name__ == "UnionType":
        return typing.Union[adapted]  # noqa: UP007
    try:
        return hint.copy_with(adapted)  # typing generics (List[...], Optional, ...)
    except AttributeError:
        return origin[adapted]  # builtin generics (list[...], dict[...])


def _as_file(cls: type, value: Any) -> Any:
    from sieve_jupyter.runtime import File

    if isinstance(value, File):
        return value
    if isinstance(value, (str, os.PathLike)):
        return cls(value)
    return value  # pydantic's instance check says what is wrong
