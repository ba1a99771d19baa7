"""`Worker`: what a pool knows of one of its workers, whatever carries the worker's messages.

A worker is reached one of two ways. A *connected* worker (`WorkerConnection`, `_worker.py`: the
local and Docker backends) is a process that connects back to the kernel over a Unix socket and
speaks the frame protocol. A *linked* worker (`LinkedWorker`, `_linked_worker.py`: the Ray
backend) is reached through its backend's own transport (`backends.WorkerLink`), which carries the
same vocabulary (`runtime/messages.py`). The pool drives both through this class: their lifecycle
state, their jobs (`WorkerJobs`), and a handful of operations each kind implements its way —
launch, cancel or reply (`send_control`), swap, terminate, and why it exited.
"""

from __future__ import annotations

import abc
import enum
import threading
import time
from typing import TYPE_CHECKING, Any, ClassVar

from sieve_jupyter.manager._worker_jobs import WorkerJobs

if TYPE_CHECKING:
    from sieve_jupyter.backends import GpuAssignment
    from sieve_jupyter.manager._pool import WorkerPool
    from sieve_jupyter.runtime.messages import Cancel, Reply, Shutdown

__all__ = ["Worker", "WorkerState"]


class WorkerState(str, enum.Enum):
    STARTING = "starting"  # launched, not yet connected
    SETUP = "setup"  # connected, running __setup__
    READY = "ready"  # warm, serving calls
    RETIRING = "retiring"  # stopping, or restarting after an error; takes no new calls
    EXITED = "exited"


_NEXT_STATES = {
    WorkerState.STARTING: {WorkerState.SETUP, WorkerState.RETIRING, WorkerState.EXITED},
    WorkerState.SETUP: {WorkerState.READY, WorkerState.RETIRING, WorkerState.EXITED},
    WorkerState.READY: {WorkerState.RETIRING, WorkerState.EXITED},
    WorkerState.RETIRING: {WorkerState.RETIRING, WorkerState.EXITED},
    WorkerState.EXITED: {WorkerState.EXITED},
}


class Worker(abc.ABC):
    """One worker of a pool: its lifecycle state, its jobs, and how to reach it."""

    #: calls to it may be written and answered on the calling thread (`_direct.py`): only a
    #: connected worker has the reply connection that needs
    direct_calls: ClassVar[bool] = False
    #: reached through a `backends.WorkerLink` (the pool hands it calls with `send_calls`)
    linked: ClassVar[bool] = False

    def __init__(self, pool: WorkerPool, worker_id: str, gpu: GpuAssignment | None) -> None:
        self.pool = pool
        self.worker_id = worker_id
        self.gpu = gpu
        self._state = WorkerState.STARTING
        #: whether it takes calls (its state is READY): read for every call, so kept beside the
        #: state rather than worked out at each read (see `move_to`)
        self.ready = False
        #: the jobs assigned to this worker (changed only with the pool's lock held)
        self.jobs = WorkerJobs(worker_id)
        #: held by the one thread making a direct call to this worker, until its outcome is
        #: read (connected workers only; a linked worker's is never taken)
        self.lane = threading.Lock()
        #: held while calls (or a swap) are handed to the worker, so they reach it whole and in
        #: the order their jobs were assigned
        self.send_lock = threading.Lock()
        self.pid: int | None = None
        self.started_at = time.time()
        self.setup_seconds: float | None = None
        self.setup_at: float | None = None
        #: the exit was asked for (stop, restart after an error): no job is blamed for it
        self.exit_expected = False
        #: jobs whose result was read and rebuilt on the worker's shared memory, not settled
        #: yet (reader thread): the job history must not pin such a result (see
        #: `Manager.hold_weakly`)
        self.shared_results: set[str] = set()

    # -- state -------------------------------------------------------------------------------

    @property
    def state(self) -> WorkerState:
        return self._state

    def move_to(self, state: WorkerState) -> None:
        """Change the lifecycle state (pool lock held).

        Raises:
            RuntimeError: the transition is not one a worker makes (a bug in the caller).
        """
        if state not in _NEXT_STATES[self._state]:
            raise RuntimeError(f"worker {self.worker_id}: {self._state.value} -> {state.value}")
        self._state = state
        self.ready = state is WorkerState.READY

    def retire(self, *, expected: bool = True) -> None:
        """Take no new calls; with `expected`, the coming exit blames no job (pool lock held)."""
        if self._state is not WorkerState.EXITED:
            self._state = WorkerState.RETIRING
        self.ready = False
        if expected:
            self.exit_expected = True

    # -- what each kind of worker does its own way -------------------------------------------

    @abc.abstractmethod
    def launch(self, env: dict[str, str], labels: dict[str, str], timeout: float) -> None:
        """Start the worker and give it the pool's code to load (on a starter thread). Its
        `Ready` (or `SetupFailed`) arrives later, like any message.

        Raises:
            BackendError: the worker could not be started.
        """

    @abc.abstractmethod
    def send_control(self, message: Cancel | Reply | Shutdown) -> None:
        """Deliver a cancel or the answer to an upstream call while the worker may be busy
        running a job; a worker that is gone is ignored."""

    @abc.abstractmethod
    def send_swap(self, swap: int, payload: bytes, sources: dict[str, list[str]]) -> None:
        """Hand the worker new code, after the calls it already has; answered by `Swapped` or
        `SwapFailed` with the same number.

        Raises:
            ChannelClosed: the worker is gone.
        """

    @abc.abstractmethod
    def terminate(self, grace: float = 2.0) -> None:
        """Stop the worker and release what the kernel holds for it. Safe to call twice."""

    @abc.abstractmethod
    def close_channels(self) -> None:
        """Release the kernel's side once the worker has exited."""

    @abc.abstractmethod
    def exit_reason(self, wait: float) -> str:
        """Why the worker ended, in a few words (``"exit code 1"``, ``"killed by SIGKILL"``),
        waiting up to `wait` seconds to find out."""

    @abc.abstractmethod
    def describe(self) -> dict[str, Any]:
        """The worker as `%sieve ls` and the side panel show it (see docs/INTERNALS.md)."""

    def _describe_base(self) -> dict[str, Any]:
        return {
            "id": self.worker_id,
            "state": self._state.value,
            "setup_seconds": self.setup_seconds,
            "setup_at": self.setup_at,
            "pid": self.pid,
            "inflight": len(self.jobs),
            "gpu": self.gpu.visible_devices if self.gpu is not None else None,
        }
