"""What user code can reach from inside a worker: other functions (chaining) and progress reports.

A worker installs itself as the current `WorkerContext`; `RemoteFunction.run/push` then send an
upstream call to the manager, which runs it like any other job and replies on the control
connection. Outside a worker (a plain script, the notebook) there is no context.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import threading
from collections.abc import Callable
from typing import Any

from sieve_jupyter.runtime.messages import Message, Progress, UpstreamCall

__all__ = ["RemoteFunction", "WorkerContext", "current_context", "report_progress"]


class WorkerContext:
    """The running worker, as seen by user code. Set once by `runtime/worker.py`."""

    def __init__(
        self, send: Callable[[Message], None], current_job: Callable[[], str | None]
    ) -> None:
        self._send = send
        self._current_job = current_job
        self._ids = itertools.count(1)
        self._pending: dict[int, concurrent.futures.Future[Any]] = {}
        self._lock = threading.Lock()

    def call_upstream(
        self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        with self._lock:
            request_id = next(self._ids)
            self._pending[request_id] = future
        self._send(UpstreamCall(request_id, self._current_job(), name, args, kwargs))
        return future

    def resolve(self, request_id: int, ok: bool, value: Any) -> None:
        with self._lock:
            future = self._pending.pop(request_id, None)
        if future is None:
            return
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)

    def fail_all(self, exc: BaseException) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(exc)

    def progress(self, fraction: float | None, message: str) -> None:
        self._send(Progress(self._current_job(), fraction, message))


_current: WorkerContext | None = None


def current_context() -> WorkerContext | None:
    """The worker this code runs in, or ``None`` in the notebook / a plain script."""
    return _current


def set_context(context: WorkerContext | None) -> None:
    global _current
    _current = context


class RemoteFunction:
    """A handle on a registered function, used from inside another function's worker.

    Pickling a notebook-side handle produces one of these, so a function that calls
    ``other.run(x)`` works unchanged in a worker: the call is routed through the manager.
    Calling it, ``other(x)``, is a plain call in this process, as calling the handle is in the
    notebook: it carries the function (or, for a model, the class: the call makes an instance
    and runs its ``__setup__``), when it could travel with the code that named it.
    """

    def __init__(self, name: str, local: Any = None, model: bool = False) -> None:
        self.name = name
        self._local = local
        self._model = model

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        local = self._local
        if local is None:
            raise TypeError(
                f"{self.name}: this handle has no code of its own in this worker (it came from "
                "sieve.function.get, or from a module the worker cannot import), so it cannot "
                f"be called directly. Fix: .run(...) or .push(...), which run {self.name} on "
                "its own workers."
            )
        if not self._model:
            return local(*args, **kwargs)
        instance = local(*args, **kwargs)
        setup = getattr(instance, "__setup__", None)
        if setup is not None:
            setup()
        return instance

    def _context(self) -> WorkerContext:
        context = current_context()
        if context is None:
            raise RuntimeError(
                f"{self.name}: this handle only works inside a worker; in the notebook use "
                f"sieve.function.get({self.name!r})"
            )
        return context

    def push(self, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        """Queue a job on the function through the manager; returns a future of its result."""
        return self._context().call_upstream(self.name, args, kwargs)

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """Run the function through the manager and wait for its result."""
        return self.push(*args, **kwargs).result()

    def __repr__(self) -> str:
        return f"<remote sieve function {self.name!r}>"

    def __reduce__(self) -> tuple[Any, ...]:
        return (RemoteFunction, (self.name, self._local, self._model))


def report_progress(fraction: float | None = None, message: str = "") -> None:
    """Report the running job's progress (0.0-1.0 and/or a message) to the notebook.

    Outside a worker this does nothing, so the same code runs in a plain call.
    """
    if fraction is not None and not 0.0 <= fraction <= 1.0:
        raise ValueError(f"report_progress: fraction must be within 0.0..1.0, got {fraction}")
    context = current_context()
    if context is not None:
        context.progress(fraction, message)
