"""A worker answering a quick direct call runs on its caller's CPU.

A direct call (`_direct.py`) is a synchronous hand-off: the caller writes the call and sleeps
until the answer comes, the worker wakes, answers and sleeps again. Linux wakes a sleeping
process on the CPU it last ran on when that CPU is idle, which for such a hand-off is the wrong
one: the CPU about to be free is the caller's. Each wake-up on another CPU costs an
inter-processor interrupt and that CPU leaving its idle state. Measured on a 2-vCPU machine with
a raw Unix socket between two processes: a 100-byte round trip took about 45 us when the
scheduler placed them, about 10 us when the answering process was kept on the caller's CPU;
busy polling (`busy_poll_us`) spares the wake-up too, but burns a CPU the peer may need.

So before a quick direct call to a worker that went to sleep the pool sets the worker's CPU
affinity to the CPU the calling thread is on (a system call only when that CPU changed since the
last call), and the caller yields to the worker until it answers instead of sleeping: an answer
that wakes a sleeping caller makes the scheduler move the caller to the idle CPU, and a caller
that moves at every call would drag its worker along for nothing (`CallerCpu.follow` backs off
from such a caller). Before the worker gets work that runs beside its caller (pushed calls, a
call that is not quick) it gets its own affinity back. Only the worker's main thread (the
process id) is moved: threads it already has keep their own mask. A thread the worker starts
while it is kept on one CPU inherits that CPU, which is why only calls that are quick on
average (under `FOLLOW_MAX_SECONDS`, and never a function's first calls) follow their caller: a
function that starts a thread pool on its first call does so before it is ever followed.

Linux only, for workers whose process this kernel may move (`WorkerProcess.host_pid`: a local
worker, not a container); anything the system refuses turns following off for that worker.
`sieve.configure(follow_caller=False)` turns it off everywhere.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable

__all__ = ["FOLLOW_MAX_SECONDS", "CallerCpu", "current_cpu"]

#: a function's calls follow their caller only while they average less than this: the wake-up
#: spared (tens of microseconds) matters next to a call this short, and threads a call starts
#: while it is kept on one CPU would stay there (see the module docstring)
FOLLOW_MAX_SECONDS = 0.0005
#: calls not followed after the caller was found to have moved to another CPU
_BACK_OFF = 32
_MAX_BACK_OFF = 4096


def _cpu_reader() -> Callable[[], int] | None:
    """The C library's `sched_getcpu` (Python has no binding for it), None where missing."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).sched_getcpu
    except (AttributeError, OSError):
        return None
    function.restype = ctypes.c_int
    function.argtypes = []
    return function


_getcpu = _cpu_reader()


def current_cpu() -> int | None:
    """The CPU the calling thread runs on right now, None where that cannot be known."""
    if _getcpu is None:
        return None
    cpu = _getcpu()
    return cpu if cpu >= 0 else None


class CallerCpu:
    """Where one worker process may run: its own CPUs, or its caller's one (see the module
    docstring). `follow` and `release` may be called from any thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        #: the worker's own CPUs, given back by `release`: read when it is first followed
        #: (after its `__setup__` and first calls, so CPUs chosen there, or by hand, are kept)
        self.home: frozenset[int] | None = None
        #: the CPU the worker is kept on, None while it may run anywhere it likes
        self.kept_on: int | None = None
        #: the system refused a change: this worker is left where it is from now on
        self.disabled = False
        #: calls left before following is tried again after the caller moved, and how many
        #: to skip the next time it moves (see `follow`)
        self._skips = 0
        self._back_off = _BACK_OFF
        self._lock = threading.Lock()

    def follow(self) -> bool:
        """Keep the worker on the calling thread's CPU, if following pays; returns whether
        the worker is kept there (no system call when it already was).

        A caller that sleeps while the worker answers is woken by the answer, and the
        scheduler then often moves it to the idle CPU rather than wait for its own. A caller
        found on another CPU than the one the worker was kept on has moved so: it would move
        at every call, dragging the worker along for nothing (measured: slower than leaving
        both to the scheduler). Then the worker is given its own CPUs back for the next
        `_BACK_OFF` calls, twice as many each time the caller moves again (up to
        `_MAX_BACK_OFF`), after which following is tried again."""
        if self.disabled:
            return False
        if self._skips:
            self._skips -= 1
            return False
        cpu = current_cpu()
        if cpu is None:
            return False
        if self.home is None:
            try:
                self.home = frozenset(os.sched_getaffinity(self.pid))
            except OSError:  # (gone)
                self.disabled = True
                return False
        if cpu == self.kept_on:
            self._back_off = _BACK_OFF  # (the caller stayed: following pays)
            return True
        if self.kept_on is not None or cpu not in self.home:
            self._skips = self._back_off
            self._back_off = min(2 * self._back_off, _MAX_BACK_OFF)
            self.release()
            return False
        with self._lock:
            if self._set({cpu}):
                self.kept_on = cpu
        return self.kept_on is not None

    def release(self) -> None:
        """Let the worker run on any of its own CPUs again."""
        if self.kept_on is None:
            return
        with self._lock:
            if self.kept_on is not None and self.home is not None and self._set(self.home):
                self.kept_on = None

    def stop(self) -> None:
        """Never touch the process again: it exited or is being stopped, and once it is
        reaped its process id may name another process."""
        with self._lock:
            self.disabled = True

    def _set(self, cpus: set[int] | frozenset[int]) -> bool:
        if self.disabled:
            return False
        try:
            os.sched_setaffinity(self.pid, cpus)
        except OSError:  # gone, or not ours to move: never try again
            self.disabled = True
            return False
        return True
