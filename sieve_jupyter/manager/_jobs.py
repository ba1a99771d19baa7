"""`JobFuture`: a real `concurrent.futures.Future` for one job, with Sieve's job metadata.

The status is derived from the future's own state machine (pending -> running -> finished /
cancelled), which already rejects illegal transitions, plus whether it finished with an error.
"""

from __future__ import annotations

import _thread
import asyncio
import collections
import concurrent.futures
import enum
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import _base
from typing import Any, TypeVar

from sieve_jupyter._errors import JobCancelledError, ResultReleasedError

__all__ = ["JobFuture", "JobStatus", "ReleasedJob", "failure_hooks"]

#: called with a job's exception before its future holds it, so nothing can see the exception
#: before the hooks have (the notebook layer attaches how IPython shows it)
failure_hooks: list[Callable[[BaseException], None]] = []


class JobStatus(str, enum.Enum):
    """Where a job is in its life. The values are what Sieve's API reports."""

    QUEUED = "queued"
    PROCESSING = "processing"
    FINISHED = "finished"
    ERROR = "error"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


T = TypeVar("T")

_CANCELLED = frozenset({_base.CANCELLED, _base.CANCELLED_AND_NOTIFIED})
_ENDED = _CANCELLED | {_base.FINISHED}


class _JobCondition(threading.Condition):
    """A future's condition, as `threading.Condition(threading.RLock())` behaves, holding two
    objects instead of eight.

    `threading.Condition` stores five bound methods of its lock on each instance (`acquire`,
    `release` and three private ones its `wait` uses), and a queue for the threads waiting. A
    kernel keeps thousands of finished jobs (the history, the futures a `.map()` returned),
    and each of those objects is one more for every full pass of the garbage collector to
    walk: with them, the passes took 54-215 ms of a 10,000-job burst that itself took
    222-464 ms. Here the methods are the class's, and the queue is made by the first wait
    (most jobs have none: a direct call reads its own answer)."""

    _waiters: Any = ()
    _lock: _thread.RLock

    def __init__(self) -> None:  # (the base class's __init__ is what this replaces)
        self._lock = _thread.RLock()  # (what `threading.RLock()` returns, without its frame)

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        self._lock.release()

    def _release_save(self) -> Any:
        return self._lock._release_save()  # type: ignore[attr-defined]

    def _acquire_restore(self, state: Any) -> None:
        self._lock._acquire_restore(state)  # type: ignore[attr-defined]

    def _is_owned(self) -> bool:
        return self._lock._is_owned()  # type: ignore[attr-defined,no-any-return]

    def wait(self, timeout: float | None = None) -> bool:
        if type(self._waiters) is tuple:  # (the lock is held, as `wait` requires)
            self._waiters = collections.deque()
        return super().wait(timeout)

    def notify_all(self) -> None:
        # Most jobs end with nobody blocked in `result()`: then there is no one to wake.
        if self._waiters:
            self.notify(len(self._waiters))


class JobFuture(concurrent.futures.Future[T]):
    """The future of one job: ``result()``, ``as_completed``, ``wait`` and callbacks all work.

    Generic in what the job returns: ``multiply.push(2, 3)`` is a ``JobFuture[int]``.

    Attributes:
        job_id: unique within the kernel, e.g. ``"adder-12"``.
        function: the name of the function or model that runs it.
        args, kwargs: the call's arguments (kept for display and retries).
        logs: ``(stream, text)`` pairs the worker printed while running the job.
        outputs: items streamed so far by a generator function.
        progress: the last ``(fraction, message)`` the job reported, or ``None``.
        submitted_at, started_at, finished_at: epoch seconds (``None`` until reached).
        context: opaque slot for the notebook layer (which cell started the job).
    """

    # Attributes most jobs never change start out as class-level defaults (a `.run()` of a
    # quick function creates thousands of these per second).
    logs: Sequence[tuple[str, str]] = ()  # a list once there is something to hold
    outputs: Sequence[Any] = ()
    streaming: bool = False
    progress: tuple[float | None, str] | None = None
    started_at: float | None = None
    finished_at: float | None = None
    worker_id: str | None = None
    #: the job whose code called this one from inside its worker (chaining), if any
    parent_job: str | None = None
    context: Any = None
    _outputs_changed: threading.Condition | None = None
    #: `Future`'s list of done callbacks, made by the first one added (most jobs have none)
    _done_callbacks: Any = ()

    def __init__(
        self,
        job_id: str,
        function: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        streaming: bool = False,
        canceller: Callable[[JobFuture[Any]], None] | None = None,
        on_cancelled: Callable[[JobFuture[Any]], None] | None = None,
    ) -> None:
        # What `Future.__init__` sets, with a leaner condition (see `_JobCondition`) and the
        # list of done callbacks left to the first one (tests/unit/test_jobs.py checks that a
        # plain Future has no other state).
        self._condition = _JobCondition()
        self._state = _base.PENDING
        self._result = None
        self._exception = None
        self._waiters: list[Any] = []
        self.job_id = job_id
        self.function = function
        self.args = args
        self.kwargs = kwargs
        self.submitted_at = time.time()
        self._canceller = canceller
        self._on_cancelled = on_cancelled
        if streaming:
            self.streaming = True
            # Streamed outputs get their own condition: Future.result(timeout) treats any
            # notify of the future's condition as "done", so it must only be notified when the
            # job ends.
            self._outputs_changed = threading.Condition()

    # -- status ------------------------------------------------------------------------------

    @property
    def status(self) -> JobStatus:
        state = self._state
        if state == _base.PENDING:
            return JobStatus.QUEUED
        if state == _base.RUNNING:
            return JobStatus.PROCESSING
        if state in _CANCELLED:
            return JobStatus.CANCELLED
        return JobStatus.ERROR if self._exception is not None else JobStatus.FINISHED

    @property
    def duration(self) -> float | None:
        """Seconds from start to finish (or until now while it runs); ``None`` if not started."""
        if self.started_at is None:
            return None
        end = self.finished_at if self.finished_at is not None else time.time()
        return max(0.0, end - self.started_at)

    @property
    def stdout(self) -> str:
        return "".join(text for stream, text in self.logs if stream == "stdout")

    @property
    def stderr(self) -> str:
        return "".join(text for stream, text in self.logs if stream == "stderr")

    def snapshot(self) -> dict[str, Any]:
        """A JSON-able summary, as shown by `%sieve jobs` and the side panel."""
        error = self._exception
        return {
            "job_id": self.job_id,
            "function": self.function,
            "status": self.status.value,
            "submitted_at": self.submitted_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "duration": self.duration,
            "error": None if error is None else f"{type(error).__name__}: {error}",
            "progress": None if self.progress is None else list(self.progress),
            "worker": self.worker_id,
        }

    # -- cancellation ------------------------------------------------------------------------

    def cancel(self) -> bool:
        """Cancel the job: a queued job never runs; a running one is interrupted in its worker.

        Returns True if the job is (now) cancelled, False if it had already finished.
        """
        with self._condition:
            if self._state == _base.FINISHED:
                return False
            if self._state in _CANCELLED:
                return True
        if self._canceller is not None:
            self._canceller(self)
        return self._mark_cancelled()

    def _mark_cancelled(self) -> bool:
        with self._condition:
            if self._state == _base.FINISHED:
                return False
            if self._state in _CANCELLED:
                return True
            self._state = _base.CANCELLED_AND_NOTIFIED
            self.finished_at = time.time()
            self._release_arguments()
            for waiter in self._waiters:
                waiter.add_cancelled(self)
            self._condition.notify_all()
        self._invoke_callbacks()  # type: ignore[attr-defined]  # Future's own helper
        self._wake_streams()
        on_cancelled = self._on_cancelled
        self._release_hooks()
        if on_cancelled is not None:
            on_cancelled(self)  # e.g. the manager publishes the new status
        return True

    # -- transitions driven by the worker pool -----------------------------------------------

    def _set_started(self, worker_id: str | None) -> bool:
        """Mark the job running; False if it was cancelled or has already ended. (What
        `set_running_or_notify_cancel` does for a job: a cancelled job is already notified, see
        `_mark_cancelled`. Called once per job, from the pool's threads.)"""
        condition: Any = self._condition  # (a `_JobCondition`)
        with condition._lock:
            if self._state != _base.PENDING:
                return False
            self._state = _base.RUNNING
        self.started_at = time.time()
        self.worker_id = worker_id
        return True

    def _resolve(
        self,
        value: Any = None,
        exception: BaseException | None = None,
        *,
        before_wake: Callable[[JobFuture[Any]], None] | None = None,
    ) -> bool:
        """Finish the job unless it was cancelled meanwhile. Returns whether it took effect.
        `before_wake` is called with the finished job (all but its value set) just before a
        value wakes the threads waiting for it."""
        self.finished_at = time.time()
        self._release_arguments()
        try:
            if exception is not None:
                for hook in failure_hooks:
                    hook(exception)
                self.set_exception(exception)
            else:
                if before_wake is not None and not self.cancelled():
                    before_wake(self)
                result: Any = list(self.outputs) if self.streaming else value
                self.set_result(result)
        except concurrent.futures.InvalidStateError:
            return False
        finally:
            if self._outputs_changed is not None:  # (a generator's job)
                self._wake_streams()
        self._release_hooks()
        return True

    def set_result(self, result: T) -> None:
        """`Future.set_result`, taking the condition's lock directly and skipping what most
        jobs do not have (threads blocked in `result()`, done callbacks): every job ends here.

        Raises:
            concurrent.futures.InvalidStateError: the job has already ended.
        """
        condition: Any = self._condition  # (a `_JobCondition`)
        with condition._lock:
            if self._state in _ENDED:
                raise concurrent.futures.InvalidStateError(f"{self._state}: {self!r}")
            self._result = result
            self._state = _base.FINISHED
            for waiter in self._waiters:
                waiter.add_result(self)
            if condition._waiters:
                condition.notify_all()
        if self._done_callbacks:
            self._invoke_callbacks()  # type: ignore[attr-defined]  # Future's own helper

    def _release_arguments(self) -> None:
        # A finished job stays in the history for `%sieve jobs`; its arguments (perhaps large
        # arrays) are only needed to (re)send the call, and the hooks to cancel it not at all,
        # so they are not kept alive with it (thousands of finished jobs are).
        self.args = ()
        self.kwargs = {}
        self._canceller = None

    def add_done_callback(self, fn: Callable[[concurrent.futures.Future[T]], object]) -> None:
        with self._condition:
            if type(self._done_callbacks) is tuple:  # (no list until there is a callback)
                self._done_callbacks = []
        super().add_done_callback(fn)

    def _release_hooks(self) -> None:
        # Once the job has ended and its done callbacks have run, neither they (a progress
        # widget's tracker, a server's bookkeeping) nor the hook told of a cancel are needed:
        # `Future` calls each callback once, and one added later at once.
        self._on_cancelled = None
        self._done_callbacks = ()

    def _add_log(self, stream: str, text: str) -> None:
        logs = self.logs
        if not isinstance(logs, list):
            logs = self.logs = []
        logs.append((stream, text))

    def _add_output(self, item: Any) -> None:
        if self._outputs_changed is None:
            self._append_output(item)
            return
        with self._outputs_changed:
            self._append_output(item)
            self._outputs_changed.notify_all()

    def _append_output(self, item: Any) -> None:
        outputs = self.outputs
        if not isinstance(outputs, list):
            outputs = self.outputs = []
        outputs.append(item)

    def _wake_streams(self) -> None:
        if self._outputs_changed is not None:
            with self._outputs_changed:
                self._outputs_changed.notify_all()

    # -- consuming ---------------------------------------------------------------------------

    def stream(self, timeout: float | None = None) -> Iterator[Any]:
        """Yield the job's outputs as the worker produces them (generator functions).

        For a plain function, yields its single result. Raises the job's error at the point
        it happened, and `JobCancelledError` if the job is cancelled.
        """
        if not self.streaming:
            yield self.result(timeout)
            return
        index = 0
        while True:
            assert self._outputs_changed is not None
            with self._outputs_changed:
                while index >= len(self.outputs) and not self.done():
                    if not self._outputs_changed.wait(timeout):
                        raise TimeoutError(f"job {self.job_id}: no output within {timeout} s")
                available = self.outputs[index:]
            yield from available
            index += len(available)
            if self.done() and index >= len(self.outputs):
                break
        if self.cancelled():
            raise JobCancelledError(f"job {self.job_id} was cancelled")
        exception = self.exception()
        if exception is not None:
            raise exception

    # A job's state only moves forward, and a finished one never changes: reading it needs no
    # lock (one attribute read is atomic). `Future` takes its condition's lock for each of
    # these, and a served prediction asks them about ten times.

    def done(self) -> bool:
        return self._state in _ENDED

    def cancelled(self) -> bool:
        return self._state in _CANCELLED

    def result(self, timeout: float | None = None) -> T:
        if self._state == _base.FINISHED and self._exception is None:
            return self._result  # type: ignore[return-value]  # (set: the job finished)
        return super().result(timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        if self._state == _base.FINISHED:
            return self._exception
        return super().exception(timeout)

    def __await__(self) -> Any:
        return self._wait_async().__await__()

    async def _wait_async(self) -> Any:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            # Not asyncio (trio through anyio): wait in a worker thread instead.
            import anyio.to_thread

            return await anyio.to_thread.run_sync(self.result)
        return await asyncio.wrap_future(self)

    def __repr__(self) -> str:
        extra = ""
        if self.status == JobStatus.ERROR and self._exception is not None:
            extra = f" {type(self._exception).__name__}"
        duration = self.duration
        took = f" {duration:.3f}s" if duration is not None else ""
        return f"<JobFuture {self.job_id} {self.status.value}{extra}{took}>"


class ReleasedJob(JobFuture[Any]):
    """What the job history shows for a finished job whose result was rebuilt on a worker's
    shared memory (or lives in Ray's object store) once nothing else holds that job's future:
    everything the job's future had (status, timings, logs, worker) but the result, which was
    released with the future so the worker can reuse its segment (and Ray free its object).
    `result()` raises `ResultReleasedError`."""

    @classmethod
    def of(cls, future: JobFuture[Any]) -> ReleasedJob:
        """A stand-in for the finished `future`, holding none of its result."""
        stand_in = cls(future.job_id, future.function, (), {})
        for name in (
            "submitted_at",
            "started_at",
            "finished_at",
            "worker_id",
            "parent_job",
            "context",
            "progress",
            "logs",
        ):
            setattr(stand_in, name, getattr(future, name))
        stand_in._state = _base.FINISHED
        return stand_in

    def result(self, timeout: float | None = None) -> Any:
        raise ResultReleasedError(
            f"job {self.job_id} finished, but its result was in shared memory (or Ray's "
            "object store) and was "
            "released when the last reference to its future went away (the job history "
            "keeps such results only while something else holds them). Fix: keep the future "
            "that .push() returned, or the value .run() returned."
        )
