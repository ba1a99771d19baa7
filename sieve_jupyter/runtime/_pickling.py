"""Pickling code by value without losing where it came from.

cloudpickle pickles functions and classes defined in a notebook (or in the user's own modules)
by value. Since 3.1.3 it also renames the file of every code object it pickles to
``<dynamic-code>`` (so that payloads are byte-for-byte deterministic), and a traceback from a
worker then names no file and quotes no line. `dumps` uses cloudpickle's own reduction of each
code object and sends the original file name beside it; `_rebuild_code` puts the name back when
the worker unpickles it, whatever the installed cloudpickle does.

A `memoryview` (which pickle refuses) travels as its bytes, out of band when large, and is a
memoryview of the same format and shape again on the other side.
"""

from __future__ import annotations

import io
import pickle
import types
from collections.abc import Callable
from typing import Any

import cloudpickle

__all__ = ["dumps"]


def _rebuild_code(
    make: Callable[..., types.CodeType], args: tuple[Any, ...], filename: str
) -> types.CodeType:
    code = make(*args)
    return code if code.co_filename == filename else code.replace(co_filename=filename)


def _rebuild_memoryview(data: Any, fmt: str, shape: tuple[int, ...]) -> memoryview:
    flat = memoryview(data).cast("B")
    view: Any = flat  # (typeshed knows casts to literal formats only)
    try:
        rebuilt: memoryview = view.cast(fmt, shape) if shape else view.cast(fmt)
    except (TypeError, ValueError):  # a format `cast` does not know: the bytes, as they are
        return flat
    return rebuilt


class _Pickler(cloudpickle.Pickler):  # type: ignore[misc]  # (cloudpickle is untyped)
    """cloudpickle's pickler, with code objects that keep their file name, and memoryviews."""

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is memoryview:
            data = pickle.PickleBuffer(obj) if obj.c_contiguous else obj.tobytes()
            return _rebuild_memoryview, (data, obj.format, obj.shape or ())
        if type(obj) is types.CodeType:
            reduce = self.dispatch_table.get(types.CodeType)
            if reduce is not None:
                make, args = reduce(obj)[:2]
                if make is types.CodeType:
                    return _rebuild_code, (make, args, obj.co_filename)
        return super().reducer_override(obj)


def dumps(obj: Any, buffer_callback: Callable[[pickle.PickleBuffer], Any] | None = None) -> bytes:
    """Pickle `obj` like ``cloudpickle.dumps(obj, protocol=5)``, keeping code's file names."""
    file = io.BytesIO()
    _Pickler(file, protocol=5, buffer_callback=buffer_callback).dump(obj)
    return file.getvalue()
