"""How user code travels to a worker: by value, with cloudpickle.

Functions and classes defined in a notebook (`__main__`) are pickled by value by cloudpickle
already. Those defined in the user's own modules (not installed packages) are pickled by value
too, so a worker — in a container that only has the runtime — never needs the user's files.
"""

from __future__ import annotations

import hashlib
import inspect
import linecache
import sys
import sysconfig
import threading
import types
from pathlib import Path
from typing import Any

import cloudpickle

from sieve_jupyter.runtime._pickling import dumps as dumps_by_value

__all__ = ["code_fingerprint", "dumps", "source_lines"]

_INSTALLED_ROOTS = tuple(
    {
        Path(p).resolve()
        for key in ("purelib", "platlib", "stdlib", "platstdlib")
        if (p := sysconfig.get_paths().get(key))
    }
)


def _is_user_module(module_name: str) -> bool:
    if module_name in ("__main__", "builtins") or module_name.startswith("sieve_jupyter"):
        return False
    module = sys.modules.get(module_name)
    filename = getattr(module, "__file__", None)
    if module is None or filename is None:
        return False
    path = Path(filename).resolve()
    return not any(path.is_relative_to(root) for root in _INSTALLED_ROOTS)


#: the user module `dumps` is pickling by value at the moment, per thread
_by_value = threading.local()


def dumps(obj: Any) -> bytes:
    """Pickle a function or class by value (see the module docstring)."""
    module_name = getattr(obj, "__module__", "__main__") or "__main__"
    if not _is_user_module(module_name):
        return dumps_by_value(obj)
    module = sys.modules[module_name]
    cloudpickle.register_pickle_by_value(module)
    _by_value.module = module_name
    try:
        data = dumps_by_value(obj)
    finally:
        _by_value.module = None
        cloudpickle.unregister_pickle_by_value(module)
    return data


def travels_by_value(obj: Any) -> bool:
    """Whether pickling `obj` now copies its code (a notebook's, or one of the user module
    being pickled by `dumps`), rather than naming it for the worker to import: where that
    module may not exist (a container), only what travels by value can be called there."""
    module_name = getattr(obj, "__module__", None) or "__main__"
    return module_name == "__main__" or module_name == getattr(_by_value, "module", None)


def source_lines(obj: Any) -> dict[str, list[str]]:
    """The source lines of the files `obj`'s code was defined in (a notebook cell's lines are
    in linecache), so a worker that lacks those files can still quote them in tracebacks."""
    functions = [obj]
    if inspect.isclass(obj):
        functions = [v for v in vars(obj).values() if inspect.isfunction(v)]
    sources: dict[str, list[str]] = {}
    for fn in functions:
        code = getattr(inspect.unwrap(fn), "__code__", None)
        if code is None or code.co_filename in sources:
            continue
        lines = linecache.getlines(code.co_filename)
        if lines:
            sources[code.co_filename] = lines
    return sources


def code_fingerprint(*functions: Any) -> str:
    """A hash of the functions' bytecode and constants: equal when the code did not change."""
    digest = hashlib.sha256()

    def visit(code: types.CodeType) -> None:
        digest.update(code.co_code)
        digest.update(repr(code.co_names).encode())
        for const in code.co_consts:
            if inspect.iscode(const):
                visit(const)
            else:
                digest.update(repr(const).encode())

    for fn in functions:
        fn = inspect.unwrap(fn) if fn is not None else None
        code = getattr(fn, "__code__", None)
        digest.update(b"|")
        if code is not None:
            visit(code)
    return digest.hexdigest()[:16]
