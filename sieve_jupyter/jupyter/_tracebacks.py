"""A job's error reads like a local one: the user's frames as IPython names them, with their
source lines, and none of the package's own frames.

A worker reports the frames of an exception beside its formatted text (file, line, function,
source line; see ``error_info`` in the worker). In the notebook:

- `install()` attaches a `_render_traceback_` to every job's exception before anyone can see
  it. IPython calls it (as it does for ipyparallel's remote errors) and gets its own formatting
  of one traceback: the caller's frames, then the worker's, each ``Cell In[5], line 7`` for
  notebook code or the file path for module code, with the source around the line, while the
  package's frames and ``concurrent.futures`` are left out. The worker's frames become real
  traceback entries (compiled stand-ins with the right file, line and function name), so
  IPython, ``%xmode`` and its colours treat them like any other frame.
- The package's own errors (`SieveError`: a bad argument, an unknown name, a spec that does not
  fit) say what is wrong and how to fix it; the frames inside the package that raised them add
  nothing a user can act on. `install()` gives the class a `_render_traceback_` that shows the
  caller's frames only, up to the line that made the call, then the error (its cause, if it
  has one, as IPython shows it).
- `error_text(exc)` is the same in a few plain lines, for the progress widget, the panel's
  tooltips and ``%sieve logs``.
"""

from __future__ import annotations

import functools
import linecache
import sys
import types
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["RemoteFrame", "error_text", "install", "install_error_display", "remote_report"]

#: modules whose frames never show: this package (the caller's side of a job), the futures it
#: waits on, and IPython's own cell runner
_HIDDEN_MODULES = ("sieve_jupyter", "concurrent.futures", "IPython")
_MAX_FRAMES = 12  # per exception, innermost kept: deep recursion must not flood a tooltip
_RELATION_TEXT = {
    "cause": "The above exception was the direct cause of the following exception:",
    "context": "During handling of the above exception, another exception occurred:",
}


@dataclass(frozen=True)
class RemoteFrame:
    """One frame of a worker's traceback."""

    filename: str
    lineno: int
    name: str
    line: str


@dataclass(frozen=True)
class RemoteException:
    """One exception of a worker's chain: its type, message and frames, and how it leads to the
    next one (``"cause"``, ``"context"``, or ``None`` for the last)."""

    type_name: str
    message: str
    frames: tuple[RemoteFrame, ...]
    relation: str | None


@dataclass(frozen=True)
class RemoteReport:
    """What a worker said about a job's exception: its frames, and the exceptions before it."""

    frames: tuple[RemoteFrame, ...]
    chain: tuple[RemoteException, ...]


def _frames(raw: Any) -> tuple[RemoteFrame, ...]:
    frames: list[RemoteFrame] = []
    for item in raw or ():
        try:
            filename, lineno, name, line = item
            frames.append(RemoteFrame(str(filename), int(lineno), str(name), str(line or "")))
        except (TypeError, ValueError):
            continue  # a report from another version of the worker: skip what we cannot read
    return tuple(frames)


def remote_report(exc: BaseException) -> RemoteReport | None:
    """The worker's report on `exc` (from its `RemoteTraceback` cause), if it came from one."""
    cause = exc.__cause__
    raw_frames = getattr(cause, "frames", None)
    if raw_frames is None:
        return None
    chain = []
    for item in getattr(cause, "chain", None) or ():
        if isinstance(item, dict):
            chain.append(
                RemoteException(
                    str(item.get("type_name", "Exception")),
                    str(item.get("message", "")),
                    _frames(item.get("frames")),
                    item.get("relation"),
                )
            )
    return RemoteReport(_frames(raw_frames), tuple(chain))


# -- names --------------------------------------------------------------------------------------


def _shell() -> Any:
    module = sys.modules.get("IPython")
    if module is None:
        return None
    try:
        return module.get_ipython()
    except Exception:  # noqa: BLE001 - no shell: plain names
        return None


def code_name(filename: str, lineno: int, shell: Any = None) -> str:
    """``Cell In[5], line 7`` for a notebook cell, ``File /path/mod.py:7`` otherwise (as IPython
    writes them)."""
    shell = shell if shell is not None else _shell()
    compiler = getattr(shell, "compile", None)
    format_code_name = getattr(compiler, "format_code_name", None)
    if format_code_name is not None:
        try:
            named = format_code_name(filename)
        except Exception:  # noqa: BLE001 - an unusual compiler: fall back to the path
            named = None
        if named is not None:
            label, name = named
            return f"{label} {name}, line {lineno}"
    return f"File {filename}:{lineno}"


def _type_label(type_name: str) -> str:
    for prefix in ("builtins.", "__main__."):
        if type_name.startswith(prefix):
            return type_name[len(prefix) :]
    return type_name


# -- plain text ---------------------------------------------------------------------------------


def _frame_lines(frames: Sequence[RemoteFrame], shell: Any) -> Iterator[str]:
    shown = frames[-_MAX_FRAMES:]
    if len(frames) > len(shown):
        yield f"… {len(frames) - len(shown)} earlier frames"
    for frame in shown:
        yield f"{code_name(frame.filename, frame.lineno, shell)}, in {frame.name}"
        line = (linecache.getline(frame.filename, frame.lineno) or frame.line).strip()
        if line:
            yield f"    {line}"


def error_text(exc: BaseException) -> str:
    """A job's error in a few lines: the worker's frames (IPython's names, one source line each,
    the package's frames left out) and ``Type: message``."""
    shell = _shell()
    type_name, message = _headline(exc)
    report = remote_report(exc)
    if report is None:
        return f"{type_name}: {message}" if message else type_name
    lines: list[str] = []
    for earlier in report.chain:
        lines.extend(_frame_lines(earlier.frames, shell))
        lines.append(f"{_type_label(earlier.type_name)}: {earlier.message}".rstrip(": "))
        lines += ["", _RELATION_TEXT.get(earlier.relation or "", ""), ""]
    lines.extend(_frame_lines(report.frames, shell))
    lines.append(f"{type_name}: {message}" if message else type_name)
    return "\n".join(lines)


def _headline(exc: BaseException) -> tuple[str, str]:
    type_name = getattr(exc, "type_name", None)
    if isinstance(type_name, str) and hasattr(exc, "message"):  # a RemoteError: the original type
        return _type_label(type_name), str(exc.message)
    return _type_label(f"{type(exc).__module__}.{type(exc).__qualname__}"), str(exc)


# -- IPython ------------------------------------------------------------------------------------


class _Stand(Exception):
    """Raised inside a stand-in frame (never escapes `_stand_in`)."""


@functools.lru_cache(maxsize=512)
def _stand_in_code(filename: str, lineno: int, name: str) -> types.CodeType:
    # Module code that raises on line `lineno`, named like the remote function.
    code = compile("\n" * (max(lineno, 1) - 1) + "raise __stand__", filename, "exec")
    if sys.version_info >= (3, 11):  # co_qualname is what IPython names the frame after
        return code.replace(co_name=name, co_qualname=name)
    return code.replace(co_name=name)


def _stand_in(frame: RemoteFrame) -> types.TracebackType | None:
    """A real traceback entry whose frame has the remote frame's file, line and function."""
    try:
        code = _stand_in_code(frame.filename, frame.lineno, frame.name)
        exec(code, {"__name__": "__sieve_remote__", "__stand__": _Stand})  # noqa: S102
    except _Stand:
        tb = sys.exc_info()[2]
        return tb.tb_next if tb is not None else None
    except Exception:  # noqa: BLE001 - (a filename compile() refuses): leave the frame out
        return None
    return None


def _chain_tb(entries: Sequence[tuple[types.FrameType, int, int]]) -> types.TracebackType | None:
    tb: types.TracebackType | None = None
    for frame, lasti, lineno in reversed(entries):
        tb = types.TracebackType(tb, frame, lasti, lineno)
    return tb


def _remote_entries(frames: Sequence[RemoteFrame]) -> list[tuple[types.FrameType, int, int]]:
    entries = []
    for frame in frames[-_MAX_FRAMES:]:
        tb = _stand_in(frame)
        if tb is not None:
            entries.append((tb.tb_frame, tb.tb_lasti, frame.lineno))
    return entries


def _local_entries(tb: types.TracebackType | None) -> list[tuple[types.FrameType, int, int]]:
    """The caller's own frames: the package's, the futures' and IPython's left out."""
    entries = []
    while tb is not None:
        frame = tb.tb_frame
        module = str(frame.f_globals.get("__name__", ""))
        hidden = any(module == m or module.startswith(m + ".") for m in _HIDDEN_MODULES)
        if not hidden and not frame.f_locals.get("__tracebackhide__"):
            entries.append((frame, tb.tb_lasti, tb.tb_lineno))
        tb = tb.tb_next
    return entries


@functools.lru_cache(maxsize=64)
def _surrogate_type(type_name: str) -> type[Exception]:
    """A class that prints as the worker's exception type (for the exceptions of its chain,
    which never travel themselves)."""
    module, _, name = type_name.rpartition(".")
    return type(name or "Exception", (Exception,), {"__module__": module or "builtins"})


def _surrogate_chain(chain: Sequence[RemoteException]) -> tuple[BaseException | None, str | None]:
    """Stand-in exceptions for the worker's chain; returns the last one and its relation to the
    job's exception."""
    previous: BaseException | None = None
    relation: str | None = None
    for item in chain:
        surrogate = _surrogate_type(item.type_name)(item.message)
        surrogate.__traceback__ = _chain_tb(_remote_entries(item.frames))
        if previous is not None:
            _link(surrogate, previous, relation)
        previous, relation = surrogate, item.relation
    return previous, relation


def _link(exc: BaseException, earlier: BaseException | None, relation: str | None) -> None:
    if relation == "cause":
        exc.__cause__ = earlier
    else:
        exc.__cause__ = None
        exc.__context__ = earlier
    exc.__suppress_context__ = relation == "cause" or earlier is None


class _JobTraceback:
    """A job exception's `_render_traceback_`: IPython's own traceback of the caller's frames
    followed by the worker's (see the module docstring)."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def __call__(self) -> list[str]:
        exc = self.exc
        shell = _shell()
        formatter = getattr(shell, "InteractiveTB", None)
        if formatter is None:
            import traceback

            return traceback.format_exception(type(exc), exc, exc.__traceback__)
        report = remote_report(exc)
        entries = _local_entries(exc.__traceback__)
        earlier: BaseException | None = None
        relation: str | None = None
        if report is not None:
            entries += _remote_entries(report.frames)
            earlier, relation = _surrogate_chain(report.chain)
        saved = (exc.__cause__, exc.__context__, exc.__suppress_context__)
        try:
            # The worker's frames stand in for the `RemoteTraceback` cause, which would repeat
            # them as text; the caller's context (the futures' internals) is not the user's.
            _link(exc, earlier, relation)
            stb: list[str] = formatter.structured_traceback(
                type(exc), exc, _chain_tb(entries), tb_offset=0
            )
            return stb
        finally:
            exc.__cause__, exc.__context__, exc.__suppress_context__ = saved


def _render_sieve_error(exc: BaseException) -> list[str]:
    """`SieveError._render_traceback_` (see the module docstring)."""
    formatter = getattr(_shell(), "InteractiveTB", None)
    if formatter is None:
        import traceback

        return traceback.format_exception(type(exc), exc, exc.__traceback__)
    entries = _local_entries(exc.__traceback__)
    stb: list[str] = formatter.structured_traceback(type(exc), exc, _chain_tb(entries), tb_offset=0)
    return stb


def _attach(exc: BaseException) -> None:
    try:
        exc._render_traceback_ = _JobTraceback(exc)  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - (an exception type with __slots__): IPython's own way
        pass


def install() -> None:
    """Make every job's exception display like a local one in IPython, and the package's own
    errors without its frames (idempotent)."""
    from sieve_jupyter.manager._jobs import failure_hooks

    if _attach not in failure_hooks:
        failure_hooks.append(_attach)
    install_error_display()


def install_error_display() -> None:
    """Show the package's own errors without its frames in IPython (idempotent; cheap, so the
    package does it when it is imported in IPython, before any manager exists)."""
    from sieve_jupyter._errors import SieveError

    SieveError._render_traceback_ = _render_sieve_error  # type: ignore[attr-defined]
