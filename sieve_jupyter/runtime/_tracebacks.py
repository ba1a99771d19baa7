"""Errors that cross the worker boundary: an exception described for the kernel, and the
user's source lines installed where their files do not exist (a notebook cell's code in a
container), so tracebacks quote them."""

from __future__ import annotations

import linecache
import os
import traceback
from pathlib import Path

from sieve_jupyter.runtime._pickling import dumps as dumps_by_value
from sieve_jupyter.runtime.messages import ErrorInfo

__all__ = ["error_info", "remember_sources"]

#: this package's runtime: its frames are machinery, not the user's code
_RUNTIME_DIR = str(Path(__file__).resolve().parent) + os.sep


def error_info(exc: BaseException) -> ErrorInfo:
    """Describe an exception so it can be rebuilt (or at least reported) in the kernel."""
    tb = exc.__traceback__
    # Drop the worker's own frames: the user wants to see their code.
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_RUNTIME_DIR):
        tb = tb.tb_next
    text = "".join(traceback.format_exception(type(exc), exc, tb))
    try:
        pickled: bytes | None = dumps_by_value(exc)
    except Exception:  # noqa: BLE001 - an unpicklable exception is reported by name instead
        pickled = None
    return {
        "type_name": f"{type(exc).__module__}.{type(exc).__qualname__}",
        "message": str(exc),
        "traceback": text,
        "pickled": pickled,
    }


def remember_sources(sources: dict[str, list[str]]) -> None:
    """Give tracebacks the user's source lines even where their files do not exist here:
    linecache serves these without looking at disk."""
    for filename, lines in sources.items():
        if not os.path.exists(filename):
            linecache.cache[filename] = (sum(map(len, lines)), None, lines, filename)
