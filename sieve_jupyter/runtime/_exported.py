"""Exported code, inside a worker: import a captured module and get at one of its functions or
models as plain Python, the way both a served bundle and an exported model.yaml run it.

The captured module was written for a notebook, so its sieve functions are handles. Here the
one asked for is unwrapped (the decorated function or class behind its handle), and every other
handle of the module becomes a `RemoteFunction`: a call such as ``tokenize.run(...)`` inside a
model then goes through the manager that started this worker (as chaining does in a kernel)
instead of starting workers of its own here, while ``tokenize(...)`` stays a plain call.

Standard library only: this runs in containers where nothing else of sieve-jupyter is
installed.
"""

from __future__ import annotations

import importlib
from typing import Any

from sieve_jupyter.runtime._context import RemoteFunction

__all__ = ["EntryNotFound", "exported", "is_handle", "load_exported"]


class EntryNotFound(LookupError):
    """The module binds no such name (an error raised while importing it passes as it is)."""


def is_handle(obj: Any) -> bool:
    """Whether `obj` is a handle that ``@sieve.function`` / ``@sieve.Model`` returned."""
    return type(obj).__module__.startswith("sieve_jupyter.sdk") and hasattr(obj, "__wrapped__")


def exported(module: str, entry: str) -> Any:
    """Import `module` (already on ``sys.path``) and return its `entry`, the function or model
    class itself; the module's sieve handles are routed through the manager from then on.

    Raises:
        EntryNotFound: the module binds no `entry`.
    """
    namespace = importlib.import_module(module)
    try:
        obj = getattr(namespace, entry)
    except AttributeError:
        raise EntryNotFound(f"{module}.py defines no {entry!r}") from None
    if is_handle(obj):
        obj = obj.__wrapped__
    for key, value in list(vars(namespace).items()):
        if is_handle(value):
            model = getattr(getattr(value, "spec", None), "kind", "function") == "model"
            setattr(namespace, key, RemoteFunction(value.name, value.__wrapped__, model))
    return obj


def load_exported(module: str, entry: str, kind: str) -> Any:
    """What an exported model.yaml's load entrypoint returns: for a model, an instance of its
    class whose ``__setup__`` has run (as a worker builds one); for a function, the function."""
    obj = exported(module, entry)
    if kind != "model":
        return obj
    instance = obj()
    setup = getattr(instance, "__setup__", None)
    if setup is not None:
        setup()
    return instance
