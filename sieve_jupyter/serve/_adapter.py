"""The worker's half of a served bundle: import the user's module, call, answer in JSON.

A server never imports user code (its own packages stay apart from the user's), so what it
registers with the manager is a `BundleEntry`: a pickle that, when the *worker* loads it,
imports the bundle's module from ``src/`` and returns the function (or model class) wrapped so
that:

- arguments that arrive as JSON values are validated into the declared types (pydantic, in the
  worker, where the user's types exist: a dict becomes the user's model, a string a datetime);
- results become JSON values plus `sieve.File`s (which the server turns into data URLs or
  file links), so the server can unpickle every answer without the user's packages.

Imports nothing of the serving stack (no FastAPI): this module runs inside workers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import os
import sys
import typing
from collections.abc import Callable, Iterator
from typing import Any

from sieve_jupyter.runtime._exported import EntryNotFound, exported
from sieve_jupyter.runtime._json import to_json

__all__ = ["BundleEntry", "load_entry"]


@dataclasses.dataclass(frozen=True)
class BundleEntry:
    """What a server registers for one function of a bundle; a worker that unpickles it gets
    the wrapped function or model class (see the module docstring)."""

    src: str
    module: str
    entry: str
    kind: str

    def __reduce__(self) -> tuple[Any, ...]:
        return (load_entry, (self.src, self.module, self.entry, self.kind))


def load_entry(src: str, module: str, entry: str, kind: str) -> Any:
    """Import `module` from the folder `src` and wrap its `entry` for serving (`src` empty:
    the working directory, where Ray put the bundle's ``src/`` for an actor on its node)."""
    src = src or os.getcwd()
    if src not in sys.path:
        sys.path.insert(0, src)
    try:
        # (the module's other sieve handles are reached through the server's manager)
        with _working_directory(src):
            obj = exported(module, entry)
    except EntryNotFound:
        raise LookupError(
            f"{module}.py defines no {entry!r}. Fix: export the bundle again, or correct "
            "`entry` in sieve.yaml."
        ) from None
    if kind == "model" or inspect.isclass(obj):
        return _served_model(obj)
    return _served_function(obj, obj)


@contextlib.contextmanager
def _working_directory(folder: str) -> Iterator[None]:
    """Run the module's import in `folder` (``src/``), where the export put the files that its
    import reads by a relative path (a ``readme=open("README.md").read()``), as they were beside
    the code it was exported from; calls then run where the server runs."""
    before = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


def _served_function(target: Callable[..., Any], annotated: Callable[..., Any]) -> Any:
    coerce = _coercer(annotated)

    def served(*args: Any, **kwargs: Any) -> Any:
        if coerce is not None:
            kwargs = coerce(kwargs)
        value = target(*args, **kwargs)
        if inspect.isgenerator(value):
            return _stream(value)
        return to_json(value)

    served.__name__ = getattr(target, "__name__", "served")
    served.__qualname__ = getattr(target, "__qualname__", served.__name__)
    return served


def _served_model(cls: type) -> type:
    predict = cls.__predict__  # type: ignore[attr-defined]

    class Served:
        def __init__(self) -> None:
            self.instance = cls()
            self.__predict__ = _served_function(self.instance.__predict__, predict)

        def __setup__(self) -> None:
            setup = getattr(self.instance, "__setup__", None)
            if setup is not None:
                setup()

    Served.__name__ = Served.__qualname__ = cls.__name__
    return Served


def _stream(items: Iterator[Any]) -> Iterator[Any]:
    for item in items:
        yield to_json(item)


def _coercer(func: Callable[..., Any]) -> Callable[[dict[str, Any]], dict[str, Any]] | None:
    """Validate keyword arguments into the declared types (None: nothing to do, or no
    pydantic in this worker)."""
    try:
        from pydantic import ConfigDict, TypeAdapter
    except ImportError:  # pragma: no cover - the image's SDK dependencies bring it
        return None
    try:
        hints = typing.get_type_hints(func, include_extras=True)
    except Exception:  # noqa: BLE001 - unresolvable hints: values pass as they came
        return None
    config = ConfigDict(arbitrary_types_allowed=True)
    adapters: dict[str, Any] = {}
    for name in inspect.signature(func).parameters:
        hint = hints.get(name)
        if hint is None or hint is Any:
            continue
        if getattr(hint, "__module__", "") == "numpy" and getattr(hint, "__name__", "") == (
            "ndarray"
        ):
            adapters[name] = _ArrayAdapter()  # JSON brings nested lists
            continue
        if hint is bytes:
            adapters[name] = _BytesAdapter()
            continue
        adapter = _type_adapter(TypeAdapter, hint, config)
        if adapter is not None:
            adapters[name] = adapter
    if not adapters:
        return None

    def coerce(kwargs: dict[str, Any]) -> dict[str, Any]:
        out = dict(kwargs)
        for name, value in kwargs.items():
            adapter = adapters.get(name)
            if adapter is not None:
                out[name] = adapter.validate_python(value)
        return out

    return coerce


def _type_adapter(type_adapter: Any, hint: Any, config: Any) -> Any:
    """pydantic's validator of `hint` (None: a type it cannot build, whose values are passed as
    they come). A pydantic model, dataclass or TypedDict keeps its own config: pydantic refuses
    one given beside it."""
    for options in ({"config": config}, {}):
        try:
            return type_adapter(hint, **options)
        except Exception:  # noqa: BLE001, S112 - next way, or none
            continue
    return None


class _ArrayAdapter:
    def validate_python(self, value: Any) -> Any:
        import numpy

        return numpy.asarray(value)


class _BytesAdapter:
    """`bytes` arrive as bytes (the server decoded the data URL they were sent as: see
    `InputPlan.decode_binary`), or as other text, taken as its UTF-8."""

    def validate_python(self, value: Any) -> Any:
        return value.encode() if isinstance(value, str) else value
