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
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable

from sieve_jupyter.manager import Event, Manager, get_manager

__all__ = ["manager", "routed_elsewhere"]

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
        if "ipykernel" not in sys.modules:  # (a kernel routes output as its manager starts)
            _unsubscribe = current.events.subscribe(_print, kinds={"log"})


def _stop() -> None:
    global _unsubscribe
    if _unsubscribe is not None:
        _unsubscribe()
        _unsubscribe = None


def _print(event: Event) -> None:
    data = event.data
    # (the process's own streams: a redirect of sys.stdout made by one thread for a while
    # must not catch, or outlive, output arriving on the manager's threads)
    target = sys.__stderr__ if data["stream"] == "stderr" else sys.__stdout__
    if target is not None:
        target.write(data["text"])
        target.flush()
