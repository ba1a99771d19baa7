"""What workers print, shown where a script prints.

In a notebook the notebook layer routes each job's output to the cell that started it. A plain
Python script (or terminal IPython without the extension) has no cells, and what a worker
printed stayed in its job's future (`future.stdout`), unseen: a model's "loading weights ..."
or a warning from a library never reached the terminal. So the first call through a handle in
such a process subscribes the manager's `log` events and writes every worker's output to this
process's standard output and error as it arrives, as `ProcessPoolExecutor`'s and Ray's
workers do. (A log event is emitted before its job is settled, so a call's output is printed
before `.run()` returns.)

Only calls through a handle decide: a server or a deployment drives the manager directly and
keeps worker output in its predictions' logs. The notebook layer calls `routed_elsewhere` when
it routes a manager's output itself, which stops the printing here.

A served function called over HTTP prints on its server: a handle's `.run()` writes what the
prediction printed where its caller prints (`show_run_logs`), and the output of a pushed
prediction, which arrives as it is printed, is written here too in a script
(`print_remote`).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable

from sieve_jupyter.manager import Event, Manager, get_manager

__all__ = ["manager", "print_remote", "routed_elsewhere", "show_run_logs"]

_lock = threading.Lock()
#: the manager whose output has been provided for (printed here, or routed by the notebook)
_decided: Manager | None = None
_unsubscribe: Callable[[], None] | None = None


def manager() -> Manager:
    """The process's manager, for a call through a handle: the first such call decides whether
    worker output is printed here (one identity test on later calls)."""
    current = get_manager()
    if current is not _decided:
        _decide(current)
    return current


def routed_elsewhere(routed: Manager | None) -> None:
    """The notebook layer routes `routed`'s output from now on (stop printing it here); `None`:
    it stopped, so the next call through a handle decides again."""
    global _decided
    with _lock:
        _stop()
        _decided = routed


def _decide(current: Manager) -> None:
    global _decided, _unsubscribe
    with _lock:
        if current is _decided:
            return
        _stop()
        _decided = current
        if not _in_kernel():  # (a kernel routes output as its manager starts)
            _unsubscribe = current.events.subscribe(_print, kinds={"log"})


def _in_kernel() -> bool:
    """Whether this process is a Jupyter kernel (not merely one that imported ipykernel)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return getattr(shell, "kernel", None) is not None


def _stop() -> None:
    global _unsubscribe
    if _unsubscribe is not None:
        _unsubscribe()
        _unsubscribe = None


def _print(event: Event) -> None:
    data = event.data
    _write(data["stream"], data["text"])


def print_remote(stream: str, text: str) -> None:
    """Output of a pushed prediction, as it arrives from its server, where nothing routes it
    (`sdk._remote.push_watchers`): written here, unless this is a kernel."""
    if not _in_kernel():
        _write(stream, text)


def show_run_logs(printed: str) -> None:
    """What a prediction `.run()` waited for printed on its server, written where the caller
    prints (a notebook's cell, a script's terminal), as a local `.run()` shows its worker's
    output."""
    if printed:
        sys.stdout.write(printed)
        sys.stdout.flush()


def _write(stream: str, text: str) -> None:
    # (the process's own streams: a redirect of sys.stdout made by one thread for a while
    # must not catch, or outlive, output arriving on other threads)
    target = sys.__stderr__ if stream == "stderr" else sys.__stdout__
    if target is not None:
        target.write(text)
        target.flush()
