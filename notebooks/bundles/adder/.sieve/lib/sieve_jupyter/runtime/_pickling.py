"""Pickling code by value without losing where it came from.

cloudpickle pickles functions and classes defined in a notebook (or in the user's own modules)
by value. Since 3.1.3 it also renames the file of every code object it pickles to
``<dynamic-code>`` (so that payloads are byte-for-byte deterministic), and a traceback from a
worker then names no file and quotes no line. `dumps` uses cloudpickle's own reduction of each
code object and sends the original file name beside it; `_rebuild_code` puts the name back when
the worker unpickles it, whatever the installed cloudpickle does.
"""

from __future__ import annotations

import io
import pickle
import types
from collections.abc import Callable
from typing import Any

import cloudpickle

__all__ = ["dumps"]


def _rebuild_code(make: Callable[..., types.CodeType], args: tuple[Any, ...], filename: str) -> (
    types.CodeType
):
    code = make(*args)
    return code if code.co_filename == filename else code.replace(co_filename=filename)


class _Pickler(cloudpickle.Pickler):  # type: ignore[misc]  # (cloudpickle is untyped)
    """cloudpickle's pickler, with code objects that keep their file name."""

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is types.CodeType:
            reduce = self.dispatch_table.get(types.CodeType)
            if reduce is not None:
                make, args = reduce(obj)[:2]
                if make is types.CodeType:
                    return _rebuild_code, (make, args, obj.co_filename)
        return super().reducer_override(obj)


def dumps(
    obj: Any, buffer_callback: Callable[[pickle.PickleBuffer], Any] | None = None
) -> bytes:
    """Pickle `obj` like ``cloudpickle.dumps(obj, protocol=5)``, keeping code's file names."""
    file = io.BytesIO()
    _Pickler(file, protocol=5, buffer_callback=buffer_callback).dump(obj)
    return file.getvalue()
