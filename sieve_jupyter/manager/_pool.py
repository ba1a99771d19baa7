"""`WorkerPool`: the warm workers of one function, their job queue, and dispatch.

Jobs wait in the pool's queue until a ready worker has room in its window (a few calls in
flight per worker, so fast calls are pipelined instead of paying a round trip each). The
caller's thread writes its own call when it can (a `.run()` on an idle worker reads its outcome
itself too: `_direct.py`); calls released by finished jobs are written by the pool's sender
thread. A worker that dies fails only the job it was running; the calls it had not started go
back to the front of the queue and run on its replacement.

The pool reaches the rest of the manager only through `PoolHost` (configuration, events, GPUs,
what workers need, and calls between functions), and publishes what happens on the event bus
itself. Locks: docs/INTERNALS.md, "Threads and locks".
"""

from __future__ import annotations

import collections
import concurrent.futures
import itertools
import threading
import time
import traceback
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, Union

from sieve_jupyter._errors import SieveError, WorkerCrashedError
from sieve_jupyter.manager import _direct
from sieve_jupyter.manager._worker import WorkerConnection, WorkerState
from sieve_jupyter.runtime.messages import Call, Calls, Cancel, ErrorInfo, Result, Swap, pack
from sieve_jupyter.runtime.protocol import ChannelClosed, encode

if TYPE_CHECKING:
    from sieve_jupyter._config import Config
    from sieve_jupyter.backends import Backend
    from sieve_jupyter.manager._events import EventBus
    from sieve_jupyter.manager._gpu import ManagerGpus
    from sieve_jupyter.manager._jobs import JobFuture
    from sieve_jupyter.manager._record import FunctionRecord
    from sieve_jupyter.runtime.messages import LoadOptions
    from sieve_jupyter.spec import FunctionSpec

__all__ = ["PoolHost", "SwapOutcome", "WorkerPool"]

#: how long the sender lets calls for a busy worker pile up before writing them
_GATHER_SECONDS = 0.0002
#: most calls in flight per worker (for very fast calls)
_MAX_WINDOW = 256

#: a worker's answer to a swap: None (took the new code), the error of the new code, or
#: "exited" (the worker ended before answering)
SwapOutcome: TypeAlias = Union[ErrorInfo, str, None]  # noqa: UP007 - evaluated at runtime


class PoolHost(Protocol):
    """What a pool needs from the manager that owns it."""

    config: Config
    events: EventBus
    gpus: ManagerGpus

    def worker_environment(self, spec: FunctionSpec) -> dict[str, str]: ...

    def labels(self, spec: FunctionSpec) -> dict[str, str]: ...

    def record(self, name: str) -> FunctionRecord: ...

    def submit(
        self, target: str | FunctionRecord, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> JobFuture: ...


class WorkerPool:
    """The workers, queue and dispatch of one registered function."""

    def __init__(self, host: PoolHost, record: FunctionRecord, backend: Backend) -> None:
        self.host = host
        self.events = host.events
        self.record = record
        self.backend = backend
        self.size = record.workers
        self.queue: collections.deque[JobFuture] = collections.deque()
        self.workers: dict[str, WorkerConnection] = {}
        self.state = "idle"  # idle, starting, warm, error, stopped
        self.last_error: str | None = None
        #: guards the queue, `workers`, the pool's state and every worker's `jobs` and state
        self.lock = threading.RLock()
        self._ids = itertools.count(1)
        self._swap_ids = itertools.count(1)
        #: answers awaited from workers, by (worker id, swap number)
        self._swaps: dict[tuple[str, int], concurrent.futures.Future[Any]] = {}
        self._retiring = False
        self._closed = False
        self._prepared = False
        self._sender_waiting = False
        #: moving average of how long a call takes in the worker (sizes the window)
        self._average_seconds: float | None = None
        self._wake = threading.Condition(self.lock)
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

    def load_options(self) -> LoadOptions:
        return {
            "kind": "model" if self.spec.kind == "model" else "function",
            "restart_on_error": self.spec.restart_on_error,
            "sources": self.record.sources,
            "busy_poll": self._busy_poll_seconds,
        }

    @property
    def _busy_poll_seconds(self) -> float:
        return self.host.config.busy_poll_us / 1e6

    def reply_poll_seconds(self) -> float:
        """How long a direct call polls for its outcome before sleeping: the configured time,
        unless calls of this function usually take longer than that anyway."""
        budget = self._busy_poll_seconds
        average = self._average_seconds
        return budget if average is None or average < budget else 0.0

    # -- events ------------------------------------------------------------------------------

    def publish_job(self, future: JobFuture) -> None:
        wanted = self.events.wanted
        if wanted is None or "job" in wanted:
            self.events.emit("job", future.snapshot())

    def publish_function(self) -> None:
        if self.events.wants("function"):
            self.events.emit("function", self.record.describe())

    # -- submitting --------------------------------------------------------------------------

    def ensure_open(self) -> None:
        """Raise if this pool takes no new jobs (its registration was replaced or removed)."""
        if self._closed:
            raise SieveError(
                f"{self.spec.name}: this registration was replaced or removed. Fix: use the "
                "handle from the latest run of its cell, or sieve.function.get(name)."
            )

    def submit(self, future: JobFuture) -> None:
        """Queue a job; the caller's thread writes it at once if a worker is idle."""
        with self.lock:
            self.ensure_open()
            self.queue.append(future)
            if self.state == "stopped":
                self.state = "idle"  # stopped by the user; a new job starts workers again
            started = len(self.workers) < self.size and self._start_workers()
            inline = self._assign()
        if started:
            self.publish_function()
        if inline is not None:
            self._flush(inline)

    def try_direct(self, future: JobFuture) -> bool:
        """Run `future` as a direct call if a worker is idle (see `_direct.py`); False, having
        done nothing, if none is."""
        worker = self._claim_idle_worker(future)
        if worker is None:
            return False
        _direct.call(self, worker, future)
        return True

    def cancel(self, future: JobFuture) -> None:
        """Make sure a cancelled job never starts, and interrupt it if it already has."""
        with self.lock:
            try:
                self.queue.remove(future)
                return
            except ValueError:
                pass
            target = next((w for w in self.workers.values() if future.job_id in w.jobs), None)
        if target is not None:
            target.send_control(Cancel(future.job_id))

    def _assign(self) -> WorkerConnection | None:
        """Move queued jobs to ready workers (lock held).

        Returns the worker the caller should write to itself: one that was idle, so its call is
        latency-bound. Busy workers' calls are left to the sender thread, which writes
        everything that piled up as one frame.
        """
        ready = [w for w in self.workers.values() if w.ready]
        if not ready or not self.queue:
            return None
        window = self._window()
        inline: WorkerConnection | None = None
        wake = False
        while self.queue:
            worker = ready[0] if len(ready) == 1 else min(ready, key=lambda w: len(w.jobs))
            if len(worker.jobs) >= window:
                break
            future = self.queue.popleft()
            if future.cancelled():
                continue
            if worker.jobs.idle and inline is None:
                inline = worker
            elif worker is not inline:
                wake = True
            worker.jobs.assign(future)
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

    def _flush(self, worker: WorkerConnection) -> None:
        """Write the worker's waiting calls to its data channel as one frame (any thread but
        a reader)."""
        with worker.send_lock:
            with self.lock:
                batch = worker.jobs.take_unwritten()
            if not batch or worker.data is None:
                return
            calls = [(f.job_id, f.args, f.kwargs) for f in batch]
            message = Call(*calls[0]) if len(calls) == 1 else Calls(calls)
            try:
                frame = encode(pack(message))
            except Exception:  # noqa: BLE001 - an argument that cannot be pickled
                self._write_one_by_one(worker, batch)
                frame = None
            except BaseException:
                # The pushing thread was interrupted before writing anything: the calls wait
                # for the sender thread.
                with self.lock:
                    worker.jobs.put_back(batch)
                    if self._sender_waiting:
                        self._wake.notify()
                raise
            if frame is not None:
                with self.lock:
                    worker.jobs.written([f.job_id for f in batch])
                try:
                    worker.data.write(frame)  # (whole or not at all: see Channel.write)
                except ChannelClosed:
                    return  # the reader notices the exit and requeues these jobs
        with self.lock:
            started = worker.jobs.start_next()
        if started is not None:
            self.publish_job(started)

    def _write_one_by_one(self, worker: WorkerConnection, batch: list[JobFuture]) -> None:
        assert worker.data is not None
        for future in batch:
            try:
                worker.data.send(pack(Call(future.job_id, future.args, future.kwargs)))
            except ChannelClosed:
                return
            except Exception as exc:  # noqa: BLE001
                with self.lock:
                    worker.jobs.drop(future.job_id)
                self.fail_unsendable(future, exc)
                continue
            with self.lock:
                worker.jobs.written([future.job_id])

    def fail_unsendable(self, future: JobFuture, exc: Exception) -> None:
        """Fail a job whose arguments could not be pickled (nothing of it was written)."""
        error = TypeError(
            f"job {future.job_id}: its arguments cannot be sent to the worker "
            f"({type(exc).__name__}: {exc}). Fix: pass picklable values."
        )
        error.__cause__ = exc
        self._finish(future, exception=error)

    def _send_loop(self) -> None:
        while True:
            with self.lock:
                woken = False
                while True:
                    if self._closed and not self.workers:
                        return
                    pending = [w for w in self.workers.values() if w.jobs.has_unwritten]
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
                with self.lock:
                    pending = [w for w in self.workers.values() if w.jobs.has_unwritten]
            for worker in pending:
                self._flush(worker)

    # -- direct calls (the I/O is in _direct.py) ---------------------------------------------

    def _claim_idle_worker(self, future: JobFuture) -> WorkerConnection | None:
        """A worker with nothing to do, for a direct call of `future`; None if there is none.

        On success the worker's lane and send lock are held by the calling thread (it writes
        the call, then releases the send lock) and `future` is the worker's running job.
        """
        if self.queue:
            return None
        for worker in tuple(self.workers.values()):
            if not worker.ready or not worker.jobs.idle or not worker.lane.acquire(False):
                continue
            if worker.send_lock.acquire(False):  # taken before the pool lock, as in _flush
                with self.lock:
                    if worker.ready and worker.jobs.idle and not self.queue:
                        worker.jobs.claim_direct(future)
                        return worker
                worker.send_lock.release()
            worker.lane.release()
        return None

    def unclaim(self, worker: WorkerConnection, future: JobFuture, *, requeue: bool) -> None:
        """Undo `_claim_idle_worker` for a call that was not written (lane released)."""
        with self.lock:
            worker.jobs.unclaim_direct(future, requeue=requeue)
        worker.lane.release()

    def finish_direct(self, worker: WorkerConnection, future: JobFuture, result: Result) -> None:
        """Settle a direct call that came back with a value: `jobs_done` for the common case
        of one result and nothing queued behind it, with less bookkeeping."""
        with self.lock:
            worker.jobs.finish(future.job_id)
            self._timed(result.finished_at - result.started_at)
            if len(worker.jobs) or self.queue or self._retiring:
                started, retire_now = self._hand_on(worker)
            else:
                worker.jobs.start_next()
                started, retire_now = None, False
        future.started_at = result.started_at  # the worker's own clock reading
        self._finish(future, value=result.value)
        self._after_done(started, retire_now)

    # -- outcomes and news from workers (reader threads, see _messages.py) -------------------

    def jobs_done(self, worker: WorkerConnection, results: list[Result]) -> None:
        """Finish jobs that returned (one lock round for a whole burst), then mark the next
        call running and hand the worker more."""
        finished: list[tuple[JobFuture, Result]] = []
        with self.lock:
            for result in results:
                future = worker.jobs.finish(result.job)
                self._timed(result.finished_at - result.started_at)
                if future is not None:
                    finished.append((future, result))
            started, retire_now = self._hand_on(worker)
        for future, result in finished:
            future._set_started(worker.worker_id)  # (if its start was never seen: a batch)
            future.started_at = result.started_at  # the worker's own clock reading
            self._finish(future, value=result.value)
        self._after_done(started, retire_now)

    def job_failed(self, worker: WorkerConnection, job_id: str, exception: BaseException) -> None:
        self._job_ended(worker, job_id, exception=exception)

    def job_cancelled(self, worker: WorkerConnection, job_id: str) -> None:
        """The worker skipped or interrupted a cancelled job (already marked cancelled)."""
        self._job_ended(worker, job_id, exception=None)

    def _job_ended(
        self, worker: WorkerConnection, job_id: str, *, exception: BaseException | None
    ) -> None:
        with self.lock:
            future = worker.jobs.finish(job_id)
            started, retire_now = self._hand_on(worker)
        if future is not None and exception is not None:
            self._finish(future, exception=exception)
        self._after_done(started, retire_now)

    def job_output(self, worker: WorkerConnection, job_id: str, item: Any) -> None:
        future = worker.jobs.get(job_id)
        if future is not None:
            future._add_output(item)
            if self.events.wants("output"):
                self.events.emit("output", {"job_id": job_id, "index": len(future.outputs) - 1})

    def job_log(self, worker: WorkerConnection, job_id: str | None, stream: str, text: str) -> None:
        """Text a job printed; `__setup__`'s output (no job) goes to the job waiting longest."""
        self.log(worker.jobs.get(job_id) if job_id is not None else self._waiting_job(),
                 stream, text)

    def job_progress(
        self, worker: WorkerConnection, job_id: str | None, fraction: float | None, text: str
    ) -> None:
        future = worker.jobs.get(job_id)
        if future is not None:
            future.progress = (fraction, text)
            self.publish_job(future)

    def log(self, future: JobFuture | None, stream: str, text: str) -> None:
        if future is not None:
            future._add_log(stream, text)
        if self.events.wants("log"):
            self.events.emit("log", {
                "job_id": future.job_id if future is not None else None,
                "function": self.spec.name,
                "stream": stream,
                "text": text,
            })

    def _waiting_job(self) -> JobFuture | None:
        with self.lock:
            return self.queue[0] if self.queue else None

    def undecodable_calls(self, worker: WorkerConnection, *, direct: bool) -> list[str]:
        """The jobs of the frame of calls the worker could not unpickle."""
        with self.lock:
            if direct:
                return [worker.jobs.direct] if worker.jobs.direct is not None else []
            return worker.jobs.oldest_unfinished_frame()

    def expect_exit(self, worker: WorkerConnection) -> None:
        """The worker said it is about to exit (restarting after an error): no job is blamed
        for it, and it takes no new calls meanwhile."""
        with self.lock:
            worker.retire()

    def note_protocol_error(self, exc: BaseException) -> None:
        self.last_error = "".join(traceback.format_exception(exc))

    def _timed(self, seconds: float) -> None:
        """Fold one call's duration in the worker into the moving average (lock held)."""
        average = self._average_seconds
        self._average_seconds = seconds if average is None else 0.8 * average + 0.2 * seconds

    def _hand_on(self, worker: WorkerConnection) -> tuple[JobFuture | None, bool]:
        """After some of its jobs finished (lock held): mark the worker's next call running,
        give it more from the queue. Returns the job that started, if any, and whether a
        retiring pool has nothing left to do."""
        started = worker.jobs.start_next()
        if worker.ready and self.queue:
            inline = self._assign()
            if inline is not None and self._sender_waiting:
                self._wake.notify()  # readers never write calls themselves
        return started, self._retiring and not self.queue and not self._busy()

    def _after_done(self, started: JobFuture | None, retire_now: bool) -> None:
        if started is not None:
            self.publish_job(started)
        if retire_now:
            self.stop()
            self._closed = True

    def _finish(
        self, future: JobFuture, value: Any = None, exception: BaseException | None = None
    ) -> None:
        if future._resolve(value, exception):
            self.publish_job(future)

    def _busy(self) -> bool:
        return any(len(w.jobs) for w in self.workers.values())

    # -- worker lifecycle --------------------------------------------------------------------

    def _start_workers(self) -> bool:
        """Start workers up to the pool size (lock held). Returns whether any started."""
        if self._retiring or self.state == "stopped":
            return False
        started = False
        while len(self.workers) < self.size:
            worker_id = f"{self.spec.name}-w{next(self._ids)}"
            gpu = self.host.gpus.acquire_for(self.spec, worker_id)
            worker = WorkerConnection(self, worker_id, gpu)
            self.workers[worker_id] = worker
            if self.state in ("idle", "error", "stopped"):
                self.state = "starting"
            threading.Thread(
                target=self._start_worker, args=(worker,), name=f"sieve-start-{worker_id}",
                daemon=True,
            ).start()
            started = True
        return started

    def _start_worker(self, worker: WorkerConnection) -> None:
        try:
            if not self._prepared:
                self.backend.prepare(self.spec, self._setup_log)
                self._prepared = True
            host = self.host
            worker.launch(host.worker_environment(self.spec), host.labels(self.spec),
                          host.config.start_timeout)
        except BaseException as exc:  # noqa: BLE001 - reported to the jobs waiting on it
            self.worker_failed_to_start(worker, exc)

    def _setup_log(self, text: str) -> None:
        """Build and setup output goes to the job that is waiting for this worker."""
        self.log(self._waiting_job(), "stderr" if text.startswith("ERROR") else "stdout", text)

    def worker_failed_to_start(
        self, worker: WorkerConnection, exc: BaseException, *, expected_exit: bool = False
    ) -> None:
        with self.lock:
            self.workers.pop(worker.worker_id, None)
            # A worker stopped while it was starting (stop, restart) did not fail: flagging an
            # error would also make the pool replace its other workers after a stop.
            stopping = worker.state is WorkerState.RETIRING or self.state == "stopped"
            worker.retire(expected=expected_exit)
            worker.move_to(WorkerState.EXITED)
            if not stopping:
                self.state = "error"
                self.last_error = f"{type(exc).__name__}: {exc}"
            doomed: list[JobFuture] = []
            if all(w.state is WorkerState.EXITED for w in self.workers.values()):
                doomed, self.queue = list(self.queue), collections.deque()
        worker.terminate(grace=0.5)
        self.host.gpus.release(worker.worker_id)
        for future in doomed:
            self._finish(future, exception=exc)
        self.publish_function()

    def worker_ready(self, worker: WorkerConnection, seconds: float, at: float) -> None:
        with self.lock:
            worker.setup_seconds = seconds
            worker.setup_at = at
            if worker.state is WorkerState.RETIRING or self.state == "stopped":
                # Stopped or replaced while it ran `__setup__`: it is being terminated, and
                # marking the pool warm would make it replace the workers it just stopped.
                return
            worker.move_to(WorkerState.READY)
            self.state = "warm"
            self.last_error = None
            if self._assign():
                self._wake.notify()
        self.publish_function()

    def worker_exited(self, worker: WorkerConnection) -> None:
        """The worker's channel closed: blame its running job unless the exit was expected."""
        code = worker.exit_code(wait=0.5 if worker.exit_expected else 2.0)
        with self.lock:
            self.workers.pop(worker.worker_id, None)
            was_ready = worker.state in (WorkerState.READY, WorkerState.RETIRING)
            worker.move_to(WorkerState.EXITED)
            crashed, requeue = worker.jobs.settle_exit(blame_running=not worker.exit_expected)
            self.queue.extendleft(reversed(requeue))
            if not self.workers and self.state != "stopped":
                # (a stopped pool stays stopped: its last worker leaving must not revive it)
                self.state = "idle" if was_ready or self._retiring else self.state
            swaps = [key for key in self._swaps if key[0] == worker.worker_id]
            answers = [self._swaps.pop(key) for key in swaps]
        for answer in answers:
            answer.set_result("exited")
        worker.close_channels()
        self.host.gpus.release(worker.worker_id)
        if crashed is not None:
            self._finish(crashed, exception=WorkerCrashedError(
                f"{self.spec.name}: worker {worker.worker_id} died while running job "
                f"{crashed.job_id} ({_describe_exit(code)}). The worker is replaced; other "
                "queued jobs were not affected."
            ))
        with self.lock:
            if self.state != "stopped" and not self._retiring and (was_ready or self.queue):
                # Stay warm: replace the worker now (restart_on_error, FatalException, crash).
                self._start_workers()
        self.publish_function()

    # -- stopping, restarting, swapping ------------------------------------------------------

    def retire(self) -> None:
        """Stop taking jobs; finish what is queued and running, then stop the workers."""
        with self.lock:
            self._retiring = True
            # Replaced: an old handle's job would wait forever here (no worker is started for
            # a retiring pool), so it is refused at once instead.
            self._closed = True
            idle = not self.queue and not self._busy()
        if idle:
            self.stop()

    def stop(self, *, cancel_pending: bool = True) -> None:
        """Stop all workers now; queued and running jobs are cancelled."""
        with self.lock:
            self.state = "stopped"
            workers = list(self.workers.values())
            pending = list(self.queue) if cancel_pending else []
            self.queue.clear()
            for worker in workers:
                worker.retire()
                pending.extend(worker.jobs.take_all())
            self._wake.notify_all()
        for future in pending:
            future._mark_cancelled()
        for worker in workers:
            worker.terminate()
        self.publish_function()

    def restart(self) -> None:
        """Replace every worker with a fresh one (a new `__setup__`); queued jobs wait for it."""
        with self.lock:
            workers = list(self.workers.values())
            for worker in workers:
                worker.retire()
            if self.state == "stopped":
                self.state = "idle"
            self._retiring = False
        for worker in workers:
            worker.terminate()
        with self.lock:
            started = self._start_workers()
        if started:
            self.publish_function()

    def swap(self, record: FunctionRecord) -> dict[str, SwapOutcome]:
        """Give the live workers `record`'s code, keeping their `__setup__` state; wait for
        each one's answer (a worker takes it after the calls already sent to it). Calls queued
        from now on run the new code. Returns each worker's outcome by worker id."""
        with self.lock:
            self.record = record
            workers = [w for w in self.workers.values() if w.ready]
            waiting: dict[str, tuple[WorkerConnection, int, concurrent.futures.Future[Any]]] = {}
            for worker in workers:
                number = next(self._swap_ids)
                answer: concurrent.futures.Future[Any] = concurrent.futures.Future()
                self._swaps[(worker.worker_id, number)] = answer
                waiting[worker.worker_id] = (worker, number, answer)
        for worker, number, _ in waiting.values():
            with worker.send_lock:
                try:
                    if worker.data is None:
                        raise ChannelClosed("not connected")
                    worker.data.send(pack(Swap(number, record.payload, record.sources)))
                except ChannelClosed:
                    self.swap_answered(worker, number, "exited")
        return {worker_id: answer.result() for worker_id, (_, _, answer) in waiting.items()}

    def swap_answered(self, worker: WorkerConnection, number: int, outcome: SwapOutcome) -> None:
        with self.lock:
            answer = self._swaps.pop((worker.worker_id, number), None)
        if answer is not None:
            answer.set_result(outcome)

    def describe(self) -> list[dict[str, Any]]:
        with self.lock:
            return [w.describe() for w in self.workers.values()]

    def live_workers(self) -> list[WorkerConnection]:
        with self.lock:
            return [w for w in self.workers.values() if w.ready]


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
