"""`WorkerJobs`: the jobs one worker has, and the only code that changes them.

A worker runs its calls in the order they arrive, so the kernel needs no message per call to
know which one runs: it is the oldest job written to the worker and not yet heard back about.
Every method here runs with the pool's lock held (docs/INTERNALS.md, "Threads and locks"); the
methods are the transitions, so no other module touches these fields.
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sieve_jupyter.manager._jobs import JobFuture

__all__ = ["WorkerJobs"]


class WorkerJobs:
    """Jobs assigned to one worker: written to it (in flight) or waiting to be written."""

    __slots__ = ("_direct", "_inflight", "_outbox", "_running", "worker_id")

    def __init__(self, worker_id: str) -> None:
        self.worker_id = worker_id
        #: every unfinished job of this worker, in the order it will run them
        self._inflight: dict[str, JobFuture[Any]] = {}
        #: assigned, not yet written to the data connection (a suffix of `_inflight`)
        self._outbox: collections.deque[JobFuture[Any]] = collections.deque()
        self._running: str | None = None
        #: the job of the direct call in progress (see _direct.py), if any
        self._direct: str | None = None

    # -- reading -----------------------------------------------------------------------------

    def __len__(self) -> int:
        """Unfinished jobs (written or waiting to be)."""
        return len(self._inflight)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._inflight

    def get(self, job_id: str | None) -> JobFuture[Any] | None:
        return self._inflight.get(job_id) if job_id is not None else None

    @property
    def idle(self) -> bool:
        return not self._inflight

    @property
    def has_unwritten(self) -> bool:
        return bool(self._outbox)

    @property
    def unwritten(self) -> int:
        """Calls assigned and not yet written."""
        return len(self._outbox)

    @property
    def direct(self) -> str | None:
        return self._direct

    # -- queued calls ------------------------------------------------------------------------

    def assign(self, future: JobFuture[Any]) -> None:
        """`future` goes to this worker; it waits in the outbox until written."""
        self._inflight[future.job_id] = future
        self._outbox.append(future)

    def take_unwritten(self) -> list[JobFuture[Any]]:
        """The calls waiting to be written, in order; the caller writes them (or puts them
        back)."""
        batch = list(self._outbox)
        self._outbox.clear()
        return batch

    def put_back(self, batch: list[JobFuture[Any]]) -> None:
        """Calls taken but not written (the writer was interrupted): first in line again."""
        self._outbox.extendleft(reversed(batch))

    def oldest_written(self) -> str | None:
        """The oldest job written to the worker and not yet heard back about, but the direct
        call's: the worker reads calls in order and answers each before it reads the next,
        so that is the call it just failed to read."""
        for future in self._inflight.values():
            if self._outbox and future is self._outbox[0]:
                return None  # the rest was never written
            if future.job_id != self._direct:
                return future.job_id
        return None

    def drop(self, job_id: str) -> None:
        """Forget a job that will never be written (its arguments could not be pickled)."""
        self._inflight.pop(job_id, None)

    # -- direct calls ------------------------------------------------------------------------

    def claim_direct(self, future: JobFuture[Any]) -> None:
        """`future` is written now by its caller, who reads the outcome itself."""
        self._inflight[future.job_id] = future
        self._running = self._direct = future.job_id

    def unclaim_direct(self, future: JobFuture[Any], *, requeue: bool) -> None:
        """The direct call was not written. With `requeue` it stays in flight, not running, so
        the exit of a worker that is going away puts it back in the queue."""
        if self._running == future.job_id:
            self._running = None
        self._direct = None
        if not requeue:
            self._inflight.pop(future.job_id, None)

    # -- outcomes ----------------------------------------------------------------------------

    def finish(self, job_id: str) -> JobFuture[Any] | None:
        """The worker is done with `job_id`; returns its future (None if already settled). A
        worker left with nothing in flight runs nothing (with jobs left, `start_next` says
        which one runs now)."""
        future = self._inflight.pop(job_id, None)
        if self._direct == job_id:
            self._direct = None
        if not self._inflight:
            self._running = None
        return future

    def start_next(self) -> JobFuture[Any] | None:
        """After jobs finished: the oldest written job is the one running now. Returns it if
        it just became `processing`."""
        for future in self._inflight.values():
            if self._outbox and future is self._outbox[0]:
                break  # nothing written is left: the worker is idle
            self._running = future.job_id
            if future._set_started(self.worker_id):
                return future
            return None
        self._running = None
        return None

    def settle_exit(
        self, *, blame_running: bool
    ) -> tuple[JobFuture[Any] | None, list[JobFuture[Any]]]:
        """The worker is gone: returns the job it was running (if it is to blame) and the
        unfinished others, in order, to run elsewhere. Leaves this object empty."""
        crashed: JobFuture[Any] | None = None
        others: list[JobFuture[Any]] = []
        for job_id, future in self._inflight.items():
            if job_id == self._running and blame_running:
                crashed = future
            elif not future.done():
                others.append(future)
        self._inflight.clear()
        self._outbox.clear()
        self._running = self._direct = None
        return crashed, others

    def take_all(self) -> list[JobFuture[Any]]:
        """Every unfinished job (the pool is stopping and cancels them)."""
        jobs = list(self._inflight.values())
        self._inflight.clear()
        self._outbox.clear()
        self._running = self._direct = None
        return jobs
