"""`WorkerPool`: the warm workers of one function, their job queue, and dispatch.

Jobs wait in the pool's queue until a ready worker has room in its window (a few calls in
flight per worker, so fast calls are pipelined instead of paying a round trip each). The
caller's thread writes its own call when it can; calls released by finished jobs are written by
the pool's sender thread. A worker that dies fails only the job it was running; the calls it had
not started go back to the front of the queue and run on its replacement.
"""

from __future__ import annotations

import collections
import itertools
import threading
import time
import traceback
from typing import TYPE_CHECKING, Any

from sieve_jupyter._errors import SieveError, WorkerCrashedError
from sieve_jupyter.manager._jobs import JobFuture
from sieve_jupyter.manager._worker import WorkerConnection, WorkerState
from sieve_jupyter.runtime.protocol import ChannelClosed, encode

if TYPE_CHECKING:
    from sieve_jupyter.backends import Backend
    from sieve_jupyter.manager._manager import FunctionRecord, Manager
    from sieve_jupyter.spec import FunctionSpec

__all__ = ["WorkerPool"]

#: (job id, value, exception, cancelled, (started, finished) or None) of a job a worker is done with
_Outcome = tuple[str, Any, "BaseException | None", bool, "tuple[float, float] | None"]

_READY = WorkerState.READY

#: how long the sender lets calls for a busy worker pile up before writing them
_GATHER_SECONDS = 0.0002
#: most calls in flight per worker (for very fast calls)
_MAX_WINDOW = 256


class WorkerPool:
    """The workers, queue and dispatch of one registered function."""

    def __init__(self, manager: Manager, record: FunctionRecord, backend: Backend) -> None:
        self.manager = manager
        self.record = record
        self.backend = backend
        self.size = record.workers
        self.queue: collections.deque[JobFuture] = collections.deque()
        self.workers: dict[str, WorkerConnection] = {}
        self.state = "idle"  # idle, starting, warm, error, stopped
        self.last_error: str | None = None
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._retiring = False
        self._closed = False
        self._prepared = False
        self._sender_waiting = False
        #: moving average of how long a call takes in the worker (sizes the window)
        self._average_seconds: float | None = None
        self._wake = threading.Condition(self._lock)
        self._sender = threading.Thread(
            target=self._send_loop, name=f"sieve-sender-{record.spec.name}", daemon=True
        )
        self._sender.start()

    @property
    def spec(self) -> FunctionSpec:
        return self.record.spec

    @property
    def payload(self) -> bytes:
        return self.record.payload

    def load_options(self) -> dict[str, Any]:
        return {
            "kind": self.spec.kind,
            "restart_on_error": self.spec.restart_on_error,
            "sources": self.record.sources,
            "busy_poll": self._busy_poll_seconds,
        }

    @property
    def _busy_poll_seconds(self) -> float:
        return self.manager.config.busy_poll_us / 1e6

    def reply_poll_seconds(self) -> float:
        """How long a direct call polls for its outcome before sleeping: the configured time,
        unless calls of this function usually take longer than that anyway."""
        budget = self._busy_poll_seconds
        average = self._average_seconds
        return budget if average is None or average < budget else 0.0

    # -- submitting --------------------------------------------------------------------------

    def ensure_open(self) -> None:
        """Raise if this pool takes no new jobs (its registration was replaced or removed)."""
        if self._closed:
            raise SieveError(
                f"{self.spec.name}: this registration was replaced or removed. Fix: use the "
                "handle from the latest run of its cell, or sieve.function.get(name)."
            )

    def submit(self, future: JobFuture) -> None:
        with self._lock:
            self.ensure_open()
            self.queue.append(future)
            if self.state == "stopped":
                self.state = "idle"  # stopped by the user; a new job starts workers again
            if len(self.workers) < self.size:
                self._ensure_workers()
            inline = self._assign()
        if inline is not None:
            self._flush(inline)

    def start(self) -> None:
        """Start workers up to the pool size without waiting for a job (`Manager.warm`)."""
        with self._lock:
            self.ensure_open()
            if self.state == "stopped":
                self.state = "idle"
            self._ensure_workers()

    def cancel(self, future: JobFuture) -> None:
        """Make sure a cancelled job never starts, and interrupt it if it already has."""
        with self._lock:
            try:
                self.queue.remove(future)
                return
            except ValueError:
                pass
            for worker in self.workers.values():
                if future.job_id in worker.inflight:
                    target = worker
                    break
            else:
                return
        target.send_control(("cancel", future.job_id))

    def _assign(self) -> WorkerConnection | None:
        """Move queued jobs into ready workers' outboxes (lock held).

        Returns the worker the caller should write to itself: one that was idle, so its call is
        latency-bound (`.run()`). Busy workers' calls are left to the sender thread, which
        writes everything that piled up as one frame.
        """
        ready = [w for w in self.workers.values() if w.state == WorkerState.READY]
        if not ready or not self.queue:
            return None
        window = self._window()
        inline: WorkerConnection | None = None
        wake = False
        while self.queue:
            worker = ready[0] if len(ready) == 1 else min(ready, key=lambda w: len(w.inflight))
            if len(worker.inflight) >= window:
                break
            future = self.queue.popleft()
            if future.cancelled():
                continue
            if not worker.inflight and inline is None:
                inline = worker
            elif worker is not inline:
                wake = True
            worker.inflight[future.job_id] = future
            worker.outbox.append(future)
        if wake and self._sender_waiting:
            self._wake.notify()
        return inline

    def _window(self) -> int:
        """Calls in flight per worker: many for fast calls (pipelining hides the round trip),
        few for slow ones (so a second worker is not left idle while calls wait behind a
        long one)."""
        average = self._average_seconds
        if average is None:
            # Until calls have been timed, keep work spread over the pool's workers.
            return _MAX_WINDOW if self.size == 1 else 2
        if average < 0.0001:
            return _MAX_WINDOW
        if average > 0.05:
            return 1
        return max(2, min(_MAX_WINDOW, int(0.005 / average)))

    def _mark_head_running(self, worker: WorkerConnection) -> JobFuture | None:
        """The worker runs its calls in order, so the oldest one it has been sent is the one
        running now (lock held). Returns it if it just became `processing`."""
        for future in worker.inflight.values():
            if worker.outbox and future in worker.outbox:
                return None
            worker.running_job = future.job_id
            if future._state == "PENDING" and future._set_started(worker.worker_id):
                return future
            return None
        worker.running_job = None
        return None

    def _flush(self, worker: WorkerConnection) -> None:
        """Write the worker's outbox to its data channel, in order (any thread but a reader)."""
        with worker.send_lock:
            with self._lock:
                batch = list(worker.outbox)
                worker.outbox.clear()
            if not batch or worker.data is None:
                return
            calls = [(f.job_id, f.args, f.kwargs) for f in batch]
            message: Any = ("call", *calls[0]) if len(calls) == 1 else ("calls", calls)
            try:
                frame = encode(message)
            except Exception:  # noqa: BLE001 - an argument that cannot be pickled
                self._send_one_by_one(worker, batch)
                frame = None
            except BaseException:
                # The pushing thread was interrupted before writing anything: the calls go
                # back to the front of the outbox, for the sender thread.
                with self._lock:
                    worker.outbox.extendleft(reversed(batch))
                    if self._sender_waiting:
                        self._wake.notify()
                raise
            if frame is not None:
                worker.sent_frame([f.job_id for f in batch])
                try:
                    worker.data.write(frame)  # (whole or not at all: see Channel.write)
                except ChannelClosed:
                    return  # the reader notices the exit and requeues these jobs
        with self._lock:
            started = self._mark_head_running(worker)
        if started is not None:
            self.manager.publish_job(started)

    def _send_one_by_one(self, worker: WorkerConnection, batch: list[JobFuture]) -> None:
        assert worker.data is not None
        for future in batch:
            try:
                worker.data.send(("call", future.job_id, future.args, future.kwargs))
                worker.sent_frame([future.job_id])
            except ChannelClosed:
                return
            except Exception as exc:  # noqa: BLE001
                with self._lock:
                    worker.inflight.pop(future.job_id, None)
                self.fail_unsendable(future, exc)

    def fail_unsendable(self, future: JobFuture, exc: Exception) -> None:
        """Fail a job whose arguments could not be pickled (nothing of it was written)."""
        error = TypeError(
            f"job {future.job_id}: its arguments cannot be sent to the worker "
            f"({type(exc).__name__}: {exc}). Fix: pass picklable values."
        )
        error.__cause__ = exc
        self._finish(future, exception=error)

    # -- direct calls (see _direct.py) -------------------------------------------------------

    def claim_idle_worker(self, future: JobFuture) -> WorkerConnection | None:
        """A worker with nothing to do, for a direct call of `future`; None if there is none.

        On success the worker's lane and send lock are held by the calling thread (it writes
        the call, then releases the send lock) and `future` is the worker's running job.
        """
        if self.queue:
            return None
        for worker in tuple(self.workers.values()):
            if worker.state is not _READY or worker.inflight or not worker.lane.acquire(False):
                continue
            if worker.send_lock.acquire(False):  # taken before the pool lock, as in _flush
                with self._lock:
                    if (worker.state is _READY and not worker.inflight and not worker.outbox
                            and not self.queue):
                        worker.inflight[future.job_id] = future
                        worker.running_job = worker.direct_job = future.job_id
                        return worker
                worker.send_lock.release()
            worker.lane.release()
        return None

    def unclaim(self, worker: WorkerConnection, future: JobFuture, *, requeue: bool) -> None:
        """Undo `claim_idle_worker` for a call that was not written. With `requeue` the job
        stays among the worker's in-flight jobs, not running, so the reader of a worker that
        is going away puts it back in the queue; otherwise it is dropped (it failed)."""
        with self._lock:
            if worker.running_job == future.job_id:
                worker.running_job = None
            worker.direct_job = None
            if not requeue:
                worker.inflight.pop(future.job_id, None)
        worker.lane.release()

    def _send_loop(self) -> None:
        while True:
            with self._lock:
                woken = False
                while True:
                    if self._closed and not self.workers:
                        return
                    pending = [w for w in self.workers.values() if w.outbox]
                    if pending:
                        break
                    self._sender_waiting = True
                    woken = self._wake.wait(1.0)
                    self._sender_waiting = False
                    if woken:
                        break
            if woken:
                # Calls reach this thread only while their worker is busy with earlier ones:
                # a moment's pause lets a burst of pushes pile up into one frame instead of
                # this thread and the pushing one trading the GIL call by call.
                time.sleep(_GATHER_SECONDS)
                with self._lock:
                    pending = [w for w in self.workers.values() if w.outbox]
            for worker in pending:
                self._flush(worker)

    # -- worker lifecycle --------------------------------------------------------------------

    def _ensure_workers(self) -> None:
        """Start workers up to the pool size (lock held)."""
        if self._retiring or self.state == "stopped":
            return
        while len(self.workers) < self.size:
            worker_id = f"{self.spec.name}-w{next(self._ids)}"
            gpu = self.manager.gpus.acquire_for(self.spec, worker_id)
            worker = WorkerConnection(self, worker_id, gpu)
            self.workers[worker_id] = worker
            if self.state in ("idle", "error", "stopped"):
                self.state = "starting"
            threading.Thread(
                target=self._start_worker, args=(worker,), name=f"sieve-start-{worker_id}",
                daemon=True,
            ).start()
        self.manager.publish_function(self.record)

    def _start_worker(self, worker: WorkerConnection) -> None:
        try:
            if not self._prepared:
                self.backend.prepare(self.spec, self._setup_log)
                self._prepared = True
            env = self.manager.worker_environment(self.spec)
            worker.launch(env, self.manager.labels(self.spec), self.manager.config.start_timeout)
        except BaseException as exc:  # noqa: BLE001 - reported to the jobs waiting on it
            self.worker_failed_to_start(worker, exc)

    def _setup_log(self, text: str) -> None:
        """Build and setup output goes to the job that is waiting for this worker."""
        self.log(self.waiting_job(), "stderr" if text.startswith("ERROR") else "stdout", text)

    def worker_failed_to_start(self, worker: WorkerConnection, exc: BaseException) -> None:
        with self._lock:
            self.workers.pop(worker.worker_id, None)
            # A worker stopped while it was starting (stop, restart) did not fail: flagging an
            # error would also make the pool replace its other workers after a stop.
            stopping = worker.state == WorkerState.RETIRING or self.state == "stopped"
            worker.state = WorkerState.EXITED
            if not stopping:
                self.state = "error"
                self.last_error = f"{type(exc).__name__}: {exc}"
                remote = getattr(exc, "remote_traceback", "")
                if remote:  # (what `__setup__` raised, for whoever has no job to show it in)
                    self.last_error += f"\n\n{remote}"
            doomed = self._take_queue_if_no_worker_left()
        worker.terminate(grace=0.5)
        self.manager.gpus.release(worker.worker_id)
        for future in doomed:
            self._finish(future, exception=exc)
        self.manager.publish_function(self.record)

    def _take_queue_if_no_worker_left(self) -> list[JobFuture]:
        if any(w.state != WorkerState.EXITED for w in self.workers.values()):
            return []
        doomed = list(self.queue)
        self.queue.clear()
        return doomed

    # -- outcomes and other news from workers (reader threads, see _messages.py) -------------

    def waiting_job(self) -> JobFuture | None:
        """The job that waits longest for a worker (output from `__setup__` belongs to it)."""
        with self._lock:
            return self.queue[0] if self.queue else None

    def oldest_unfinished_calls(self, worker: WorkerConnection) -> list[str]:
        """The unfinished jobs of the oldest frame of calls written to `worker`."""
        with self._lock:
            return worker.oldest_unfinished_frame()

    def expect_exit(self, worker: WorkerConnection) -> None:
        """The worker said it is about to exit (restarting after an error): no job is blamed
        for it, and it takes no new calls meanwhile."""
        with self._lock:
            worker.state = WorkerState.RETIRING
            worker.exit_expected = True

    def worker_ready(self, worker: WorkerConnection, seconds: float, at: float) -> None:
        with self._lock:
            worker.setup_seconds = seconds
            worker.setup_at = at
            if worker.state == WorkerState.RETIRING or self.state == "stopped":
                # Stopped or replaced while it ran `__setup__`: it is being terminated, and
                # marking the pool warm would make it replace the workers it just stopped.
                return
            worker.state = WorkerState.READY
            self.state = "warm"
            self.last_error = None
            if self._assign():
                self._wake.notify()
        self.manager.publish_function(self.record)

    def job_done(
        self,
        worker: WorkerConnection,
        job_id: str,
        *,
        value: Any = None,
        exception: BaseException | None = None,
        cancelled: bool = False,
        times: tuple[float, float] | None = None,
    ) -> None:
        self.jobs_done(worker, [(job_id, value, exception, cancelled, times)])

    def jobs_done(self, worker: WorkerConnection, outcomes: list[_Outcome]) -> None:
        """Finish jobs the worker is done with (one lock round for a whole batch of results),
        then mark the next call running and hand the worker more."""
        finished: list[tuple[JobFuture, _Outcome]] = []
        with self._lock:
            for outcome in outcomes:
                future = worker.inflight.pop(outcome[0], None)
                times = outcome[4]
                if times is not None:
                    self._timed(times[1] - times[0])
                if future is not None and not outcome[3]:
                    finished.append((future, outcome))
            if worker.direct_job is not None and worker.direct_job not in worker.inflight:
                worker.direct_job = None
            started, retire_now = self._hand_on(worker)
        for future, (_, value, exception, _, times) in finished:
            if times is not None:
                if future._state == "PENDING":
                    future._set_started(worker.worker_id)
                future.started_at = times[0]  # the worker's own clock reading
            self._finish(future, value=value, exception=exception)
        self._after_done(started, retire_now)

    def finish_direct(
        self, worker: WorkerConnection, future: JobFuture, value: Any, started_at: float,
        finished_at: float,
    ) -> None:
        """Settle a direct call that came back with a value: `jobs_done` for the common case
        of one result and nothing queued behind it, with less bookkeeping."""
        with self._lock:
            worker.inflight.pop(future.job_id, None)
            worker.direct_job = None
            self._timed(finished_at - started_at)
            if worker.inflight or self.queue or self._retiring:
                started, retire_now = self._hand_on(worker)
            else:
                worker.running_job = None
                started, retire_now = None, False
        future.started_at = started_at  # the worker's own clock reading
        self._finish(future, value=value)
        self._after_done(started, retire_now)

    def _timed(self, seconds: float) -> None:
        """Fold one call's duration in the worker into the moving average (lock held)."""
        average = self._average_seconds
        self._average_seconds = seconds if average is None else 0.8 * average + 0.2 * seconds

    def _hand_on(self, worker: WorkerConnection) -> tuple[JobFuture | None, bool]:
        """After some of its jobs finished (lock held): mark the worker's next call running,
        give it more from the queue. Returns the job that started, if any, and whether a
        retiring pool has nothing left to do."""
        started = self._mark_head_running(worker)
        if worker.state == WorkerState.READY and self.queue:
            inline = self._assign()
            if inline is not None and self._sender_waiting:
                self._wake.notify()  # readers never write calls themselves
        return started, self._retiring and not self.queue and not self._busy()

    def _after_done(self, started: JobFuture | None, retire_now: bool) -> None:
        if started is not None:
            self.manager.publish_job(started)
        if retire_now:
            self.stop()
            self._closed = True

    def _finish(
        self, future: JobFuture, value: Any = None, exception: BaseException | None = None
    ) -> None:
        if future._resolve(value, exception):
            self.manager.publish_job(future)

    def log(self, future: JobFuture | None, stream: str, text: str) -> None:
        if future is not None:
            future._add_log(stream, text)
        self.manager.publish_log(self, future, stream, text)

    def note_protocol_error(self, worker: WorkerConnection, exc: BaseException) -> None:
        self.last_error = "".join(traceback.format_exception(exc))

    def worker_exited(self, worker: WorkerConnection) -> None:
        """The worker's channel closed: blame its running job unless the exit was expected."""
        code = worker.exit_code(wait=0.5 if worker.exit_expected else 2.0)
        with self._lock:
            self.workers.pop(worker.worker_id, None)
            was_ready = worker.state in (WorkerState.READY, WorkerState.RETIRING)
            worker.state = WorkerState.EXITED
            crashed: JobFuture | None = None
            requeue: list[JobFuture] = []
            for job_id, future in worker.inflight.items():
                if job_id == worker.running_job and not worker.exit_expected:
                    crashed = future
                elif not future.done():
                    requeue.append(future)
            worker.inflight.clear()
            worker.outbox.clear()
            self.queue.extendleft(reversed(requeue))
            if not self.workers and self.state != "stopped":
                # (a stopped pool stays stopped: its last worker leaving must not revive it)
                self.state = "idle" if was_ready or self._retiring else self.state
        worker.close_channels()
        self.manager.gpus.release(worker.worker_id)
        if crashed is not None:
            self._finish(crashed, exception=WorkerCrashedError(
                f"{self.spec.name}: worker {worker.worker_id} died while running job "
                f"{crashed.job_id} ({_describe_exit(code)}). The worker is replaced; other "
                "queued jobs were not affected."
            ))
        with self._lock:
            if self.state != "stopped" and not self._retiring and was_ready:
                # Stay warm: replace the worker now (restart_on_error, FatalException, crash).
                self._ensure_workers()
            elif self.queue and self.state != "stopped":
                self._ensure_workers()
        self.manager.publish_function(self.record)

    def _busy(self) -> bool:
        return any(w.inflight for w in self.workers.values())

    # -- stopping ----------------------------------------------------------------------------

    def retire(self) -> None:
        """Stop taking jobs; finish what is queued and running, then stop the workers."""
        with self._lock:
            self._retiring = True
            # Replaced: an old handle's job would wait forever here (no worker is started for
            # a retiring pool), so it is refused at once instead.
            self._closed = True
            idle = not self.queue and not self._busy()
        if idle:
            self.stop()

    def stop(self, *, cancel_pending: bool = True) -> None:
        """Stop all workers now; queued and running jobs are cancelled."""
        with self._lock:
            self.state = "stopped"
            workers = list(self.workers.values())
            pending = list(self.queue) if cancel_pending else []
            self.queue.clear()
            for worker in workers:
                worker.state = WorkerState.RETIRING
                pending.extend(worker.inflight.values())
            self._wake.notify_all()
        for future in pending:
            future._mark_cancelled()
        for worker in workers:
            worker.terminate()
        self.manager.publish_function(self.record)

    def restart(self) -> None:
        """Replace every worker with a fresh one (a new `__setup__`); queued jobs wait for it."""
        with self._lock:
            workers = list(self.workers.values())
            for worker in workers:
                worker.exit_expected = True
                worker.state = WorkerState.RETIRING
            if self.state == "stopped":
                self.state = "idle"
            self._retiring = False
        for worker in workers:
            worker.terminate()
        with self._lock:
            self._ensure_workers()

    def swap(self, worker: WorkerConnection) -> None:
        """Send the record's new code to a live worker, after the calls already sent to it."""
        with worker.send_lock:
            if worker.data is None:
                return
            try:
                worker.data.send(("swap", self.payload, self.record.sources))
            except ChannelClosed:
                pass

    def describe(self) -> list[dict[str, Any]]:
        with self._lock:
            return [w.describe() for w in self.workers.values()]

    def live_workers(self) -> list[WorkerConnection]:
        with self._lock:
            return [w for w in self.workers.values() if w.state == WorkerState.READY]


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "exit status unknown"
    if code < 0:
        import signal

        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " — often the out-of-memory killer" if name == "SIGKILL" else ""
        return f"killed by {name}{hint}"
    return f"exit code {code}"
