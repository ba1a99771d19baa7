"""Errors that cross the worker boundary: an exception described for the kernel, and the
user's source lines installed where their files do not exist (a notebook cell's code in a
container), so tracebacks quote them."""

from __future__ import annotations

import linecache
import os
import traceback
from pathlib import Path
from typing import Any, Literal

from sieve_jupyter.runtime._pickling import dumps as dumps_by_value
from sieve_jupyter.runtime.messages import ChainedError, ErrorInfo, RemoteFrame

__all__ = ["error_info", "remember_sources"]

#: this package's runtime: its frames are machinery, not the user's code
_RUNTIME_DIR = str(Path(__file__).resolve().parent) + os.sep
#: the whole package: its frames (the runtime's, and a chained call's handle) are not the user's
_PACKAGE_DIR = str(Path(__file__).resolve().parent.parent) + os.sep


def error_info(exc: BaseException) -> ErrorInfo:
    """Describe an exception so it can be rebuilt (or at least reported) in the kernel.

    Beside the formatted text, ``frames`` lists the user's frames as ``(filename, line number,
    function, source line)`` and ``chain`` the exceptions before this one (its cause or
    context, oldest first, each with its own frames and how it led to the next), so the
    notebook can show them as IPython shows local ones.
    """
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
        "type_name": _type_name(exc),
        "message": str(exc),
        "traceback": text,
        "pickled": pickled,
        "frames": _user_frames(tb),
        "chain": _chain(exc),
    }


def _type_name(exc: BaseException) -> str:
    return f"{type(exc).__module__}.{type(exc).__qualname__}"


def _user_frames(tb: Any) -> list[RemoteFrame]:
    """The frames of the user's code: this package's and ``concurrent.futures``' left out."""
    return [
        (frame.filename, frame.lineno or 0, frame.name, frame.line or "")
        for frame in traceback.extract_tb(tb)
        if not frame.filename.startswith(_PACKAGE_DIR)
        and f"{os.sep}concurrent{os.sep}futures{os.sep}" not in frame.filename
    ]


def _chain(exc: BaseException) -> list[ChainedError]:
    """The exceptions that led to `exc`, oldest first."""
    chain: list[ChainedError] = []
    seen = {id(exc)}
    current = exc
    while True:
        relation: Literal["cause", "context"]
        if current.__cause__ is not None:
            earlier, relation = current.__cause__, "cause"
        elif current.__context__ is not None and not current.__suppress_context__:
            earlier, relation = current.__context__, "context"
        else:
            break
        if id(earlier) in seen:
            break
        seen.add(id(earlier))
        chain.append(
            {
                "type_name": _type_name(earlier),
                "message": str(earlier),
                "frames": _user_frames(earlier.__traceback__),
                "relation": relation,
            }
        )
        current = earlier
    chain.reverse()
    return chain


def remember_sources(sources: dict[str, list[str]]) -> None:
    """Give tracebacks the user's source lines even where their files do not exist here:
    linecache serves these without looking at disk."""
    for filename, lines in sources.items():
        if not os.path.exists(filename):
            linecache.cache[filename] = (sum(map(len, lines)), None, lines, filename)
