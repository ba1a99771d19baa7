"""`WorkerPool`: the warm workers of one function, their job queue, and dispatch.

Jobs wait in the pool's queue until a ready worker has room in its window (a few calls in
flight per worker, so fast calls are pipelined instead of paying a round trip each). The
caller's thread writes its own call when it can (a `.run()` on an idle worker reads its outcome
itself too: `_direct.py`); calls released by finished jobs are written by the pool's sender
thread. A worker that dies fails only the job it was running; the calls it had not started go
back to the front of the queue and run on its replacement.

The pool reaches the rest of the manager only through `PoolHost` (configuration, events, GPUs,
what workers need, and calls between functions), and publishes what happens on the event bus
itself. Its state is in `_pool_base.py`, its workers' lifecycle in `_pool_workers.py`; this
module is dispatch. Locks: docs/INTERNALS.md, "Threads and locks".
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, cast

from sieve_jupyter.manager import _direct
from sieve_jupyter.manager._linked_worker import LinkedWorker, deferred_interrupts
from sieve_jupyter.manager._pool_base import PoolHost, SwapOutcome
from sieve_jupyter.manager._pool_workers import PoolWorkers
from sieve_jupyter.manager._worker import WorkerConnection
from sieve_jupyter.manager._worker_base import Worker
from sieve_jupyter.runtime.messages import Cancel, Result, pack_call
from sieve_jupyter.runtime.protocol import Channel, ChannelClosed, Frame

if TYPE_CHECKING:
    from sieve_jupyter.manager._jobs import JobFuture

__all__ = ["PoolHost", "SwapOutcome", "WorkerPool"]

#: how long the sender lets calls for a busy worker pile up before writing them
_GATHER_SECONDS = 0.0002
#: most calls in flight per worker (for very fast calls)
_MAX_WINDOW = 256
#: calls waiting for a busy worker that a pushing thread writes itself, in one write, rather
#: than leave them to the sender thread (see `_full_batch`)...
_PUSHER_BATCH = 64
#: ... when that write is at most this big: the window keeps so few such writes unread that
#: they fit in the socket's buffer, so a push never waits for the worker to read
_PUSHER_WRITE_BYTES = 16 * 1024


class WorkerPool(PoolWorkers):
    """The workers, queue and dispatch of one registered function."""

    # -- submitting --------------------------------------------------------------------------

    def submit(self, future: JobFuture[Any], *, waited: bool = False) -> None:
        """Queue a job; the caller's thread writes it at once if a worker is idle.

        `waited`: the caller waits for this job next (a `.run()` of a linked worker's pool).
        When its call goes out from this thread, this thread also waits for its outcome and
        delivers it (`WorkerLink.settle_here`), instead of being woken by the link's thread.
        """
        with self.lock:
            self.ensure_open()
            self.queue.append(future)
            if self.state == "stopped":
                self.state = "idle"  # stopped by the user; a new job starts workers again
            started = len(self.workers) < self.size and self._start_workers()
            inline = self._assign()
            limit = None  # (an idle worker's call: latency-bound, written whatever its size)
            if inline is None:
                inline, limit = self._full_batch(), _PUSHER_WRITE_BYTES
        if started:
            self.publish_function()
        if inline is None:
            return
        if not waited or limit is not None or type(inline) is WorkerConnection:
            # (limit: a busy worker's write, which the waited call may not be in)
            self._flush(inline, limit)
            return
        linked = cast(LinkedWorker, inline)
        try:
            self._flush_linked(linked, waited=future.job_id)
            linked.settle_here(future.job_id)
        except BaseException:
            # (an interrupt: the link's own thread delivers the outcome)
            linked.settle_here(future.job_id, wait=False)
            raise

    def _full_batch(self) -> Worker | None:
        """A busy worker with a write's worth of calls waiting (lock held).

        A thread pushing a burst holds the GIL while it pushes, so the sender thread it wakes
        runs only when the interpreter forces a switch (every 5 ms): calls would reach the
        worker a window at a time, and the worker would idle between windows. So the pushing
        thread writes every `_PUSHER_BATCH` calls itself (one system call, which also lets the
        reader thread in); the sender writes what is left of the burst, and any write too big
        to be sure it will not wait."""
        for worker in self.workers.values():
            # (exactly: calls left to the sender are not encoded again at every push)
            if worker.jobs.unwritten == _PUSHER_BATCH:
                return worker
        return None

    def try_direct(self, future: JobFuture[Any], wait: float | None = None) -> bool:
        """Run `future` as a direct call if a worker is idle (see `_direct.py`); False, having
        done nothing, if none is. With `wait` (seconds the caller waits at most), also False
        when this function's calls usually take longer than that."""
        if wait is not None:
            average = self._average_seconds
            if average is not None and average > wait:
                return False
        worker = self._claim_idle_worker(future)
        if worker is None:
            return False
        _direct.call(self, worker, future, wait)
        return True

    def cancel(self, future: JobFuture[Any]) -> None:
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

    def _assign(self) -> Worker | None:
        """Move queued jobs to ready workers (lock held).

        Returns the worker the caller should write to itself: one that was idle, so its call is
        latency-bound. Busy workers' calls are left to the sender thread, which writes
        everything that piled up in one write.
        """
        ready = [w for w in self.workers.values() if w.ready]
        if not ready or not self.queue:
            return None
        window = self._window()
        inline: Worker | None = None
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
        if wake:
            self._wake_sender()
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

    def _flush(self, worker: Worker, limit: int | None = None) -> None:
        """Write the worker's waiting calls to its data channel (any thread but a reader).

        Each call is a frame of its own, pickled on its own, so an object passed to several
        calls reaches each of them as its own copy, as it does a call written alone (one
        pickle for all would rebuild it once for all, and a call changing it in place would
        change it for the calls after it). The small frames of a burst go out in one write.
        With `limit` (a pushing thread's write for a busy worker), a write of more bytes, a
        call that is not small and plain, or a worker someone else is writing to, is left to
        the sender thread."""
        if type(worker) is not WorkerConnection:
            self._flush_linked(cast(LinkedWorker, worker))  # (the only other kind)
            return
        lock = worker.send_lock
        if not lock.acquire(blocking=limit is None):
            return  # a pushing thread never waits for a write: the sender (woken) takes these
        try:
            with self.lock:
                batch = worker.jobs.take_unwritten()
            channel = worker.data
            if not batch or channel is None:
                return
            if worker.cpu is not None:  # (these calls run beside whatever their pusher does)
                worker.cpu.release()
            writes: list[bytes | Frame] = []
            unsendable: list[tuple[JobFuture[Any], Exception]] = []
            try:
                calls = [pack_call(f.job_id, f.args, f.kwargs) for f in batch]
                joined = channel.encode_small(calls, limit)
                if joined is not None:
                    writes.append(joined)
                elif limit is None:
                    writes, unsendable = _encode_each(channel, batch, calls)
            except BaseException:
                # The pushing thread was interrupted before writing anything: the calls wait
                # for the sender thread.
                self._put_back(worker, batch)
                raise
            if not writes and limit is not None:
                self._put_back(worker, batch)
                return
            for future, error in unsendable:
                with self.lock:
                    worker.jobs.drop(future.job_id)
                self.fail_unsendable(future, error)
            try:
                for chunk in writes:
                    channel.write(chunk)  # (each frame whole or not at all: Channel.write)
            except ChannelClosed:
                return  # the reader notices the exit and requeues these jobs
        finally:
            lock.release()
        with self.lock:
            started = worker.jobs.start_next()
        if started is not None:
            self.publish_job(started)

    def _put_back(self, worker: Worker, batch: list[JobFuture[Any]]) -> None:
        """Calls taken for a write that did not happen: first in line again, for the sender."""
        with self.lock:
            worker.jobs.put_back(batch)
            self._wake_sender()

    def _flush_linked(self, worker: LinkedWorker, waited: str | None = None) -> None:
        """Hand a linked worker its waiting calls, in order (any thread but a settler); its
        backend sends them its own way (a Ray actor call for a group of them). A send cannot
        be cut in half like a frame, so an interrupt waits until the calls are out. `waited`:
        the job this thread will wait for (see `submit`)."""
        with worker.send_lock, deferred_interrupts():
            with self.lock:
                batch = worker.jobs.take_unwritten()
            futures = {future.job_id: future for future in batch}

            def unsendable(job: str, exc: Exception) -> None:
                with self.lock:
                    worker.jobs.drop(job)
                self.fail_unsendable(futures[job], exc)

            try:
                worker.send_calls(
                    [(future.job_id, future.args, future.kwargs) for future in batch],
                    unsendable,
                    waited=waited,
                )
            except ChannelClosed:
                return  # the worker is going: its exit requeues these jobs
        with self.lock:
            started = worker.jobs.start_next()
        if started is not None:
            self.publish_job(started)

    def fail_unsendable(self, future: JobFuture[Any], exc: Exception) -> None:
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
                # a moment's pause lets a burst of pushes pile up into one write instead of
                # this thread and the pushing one trading the GIL call by call.
                time.sleep(_GATHER_SECONDS)
                with self.lock:
                    pending = [w for w in self.workers.values() if w.jobs.has_unwritten]
            for worker in pending:
                self._flush(worker)

    # -- direct calls (the I/O is in _direct.py) ---------------------------------------------

    def _claim_idle_worker(self, future: JobFuture[Any]) -> WorkerConnection | None:
        """A worker with nothing to do, for a direct call of `future`; None if there is none.

        On success the worker's lane and send lock are held by the calling thread (it writes
        the call, then releases the send lock) and `future` is the worker's running job.
        """
        if self.queue or not self.direct_calls:
            return None
        for worker in tuple(self.workers.values()):
            if not worker.ready or not worker.jobs.idle or not worker.lane.acquire(False):
                continue
            assert isinstance(worker, WorkerConnection)
            # An idle worker's send lock is held at most by a writer finishing up (the frame
            # whose answer just made the worker idle, or a swap): wait for it rather than
            # queue a call that could go straight out. Taken before the pool lock, as in _flush.
            worker.send_lock.acquire()
            with self.lock:
                if worker.ready and worker.jobs.idle and not self.queue:
                    worker.jobs.claim_direct(future)
                    return worker
            worker.send_lock.release()
            worker.lane.release()
        return None

    def unclaim(self, worker: Worker, future: JobFuture[Any], *, requeue: bool) -> None:
        """Undo `_claim_idle_worker` for a call that was not written (lane released)."""
        with self.lock:
            worker.jobs.unclaim_direct(future, requeue=requeue)
        worker.lane.release()

    def finish_direct(
        self, worker: Worker, future: JobFuture[Any], result: Result, *, shared: bool = False
    ) -> None:
        """Settle a direct call that came back with a value: `jobs_done` for the common case
        of one result and nothing queued behind it, with less bookkeeping. `shared`: the value
        was rebuilt on the worker's shared memory."""
        started: JobFuture[Any] | None = None
        retire_now = False
        with self.lock:
            worker.jobs.finish(future.job_id)  # (left idle, it runs nothing: no hand-on)
            self._timed(result.finished_at - result.started_at)
            if len(worker.jobs) or self.queue or self._retiring:
                started, retire_now = self._hand_on(worker)
        future.started_at = result.started_at  # the worker's own clock reading
        self._finish(future, value=result.value, shared=shared)
        self._after_done(started, retire_now)

    # -- outcomes and news from workers (reader threads, see _messages.py) -------------------

    def jobs_done(self, worker: Worker, results: list[Result]) -> None:
        """Finish jobs that returned (one lock round for a whole burst), then mark the next
        call running and hand the worker more."""
        finished: list[tuple[JobFuture[Any], Result]] = []
        with self.lock:
            for result in results:
                future = worker.jobs.finish(result.job)
                self._timed(result.finished_at - result.started_at)
                if future is not None:
                    finished.append((future, result))
            started, retire_now = self._hand_on(worker)
        shared = worker.shared_results
        publish = self.events.wants("job")  # (asked once: a burst settles thousands of jobs)
        for future, result in finished:
            # A job whose result came in a burst behind the one before it was never marked
            # running (that happens once per burst): it is now, and says so, so every job's
            # status goes queued -> processing -> finished.
            started_now = future._set_started(worker.worker_id)
            future.started_at = result.started_at  # the worker's own clock reading
            if started_now and publish:
                self.publish_job(future)
            self._finish(
                future, value=result.value, shared=future.job_id in shared, publish=publish
            )
        if shared:
            shared.difference_update(result.job for result in results)
        self._after_done(started, retire_now)

    def job_failed(self, worker: Worker, job_id: str, exception: BaseException) -> None:
        self._job_ended(worker, job_id, exception=exception)

    def job_cancelled(self, worker: Worker, job_id: str) -> None:
        """The worker skipped or interrupted a cancelled job (already marked cancelled)."""
        self._job_ended(worker, job_id, exception=None)

    def _job_ended(self, worker: Worker, job_id: str, *, exception: BaseException | None) -> None:
        with self.lock:
            future = worker.jobs.finish(job_id)
            started, retire_now = self._hand_on(worker)
        if future is not None and exception is not None:
            self._finish(future, exception=exception)
        self._after_done(started, retire_now)

    def job_output(self, worker: Worker, job_id: str, item: Any) -> None:
        future = worker.jobs.get(job_id)
        if future is not None:
            future._add_output(item)
            if self.events.wants("output"):
                self.events.emit("output", {"job_id": job_id, "index": len(future.outputs) - 1})

    def job_log(self, worker: Worker, job_id: str | None, stream: str, text: str) -> None:
        """Text a job printed; `__setup__`'s output (no job) goes to the job waiting longest."""
        self.log(
            worker.jobs.get(job_id) if job_id is not None else self._waiting_job(), stream, text
        )

    def job_progress(
        self, worker: Worker, job_id: str | None, fraction: float | None, text: str
    ) -> None:
        future = worker.jobs.get(job_id)
        if future is not None:
            future.progress = (fraction, text)
            self.publish_job(future)

    def undecodable_call(self, worker: Worker, *, direct: bool) -> str | None:
        """The job whose call the worker could not unpickle."""
        with self.lock:
            return worker.jobs.direct if direct else worker.jobs.oldest_written()

    def _timed(self, seconds: float) -> None:
        """Fold one call's duration in the worker into the moving average (lock held)."""
        average = self._average_seconds
        self._average_seconds = seconds if average is None else 0.8 * average + 0.2 * seconds

    def _hand_on(self, worker: Worker) -> tuple[JobFuture[Any] | None, bool]:
        """After some of its jobs finished (lock held): mark the worker's next call running,
        give it more from the queue. Returns the job that started, if any, and whether a
        retiring pool has nothing left to do."""
        started = worker.jobs.start_next()
        if worker.ready and self.queue:
            inline = self._assign()
            if inline is not None:
                self._wake_sender()  # readers never write calls themselves
        return started, self._retiring and not self.queue and not self._busy()

    def _after_done(self, started: JobFuture[Any] | None, retire_now: bool) -> None:
        if started is not None:
            self.publish_job(started)
        if retire_now:
            self.stop()
            self._closed = True


def _encode_each(
    channel: Channel, batch: list[JobFuture[Any]], calls: list[Any]
) -> tuple[list[bytes | Frame], list[tuple[JobFuture[Any], Exception]]]:
    """The calls of `batch` (`calls`, packed) encoded one by one, for writing in order (runs of
    small frames joined into one write), and the jobs whose arguments cannot be pickled."""
    writes: list[bytes | Frame] = []
    unsendable: list[tuple[JobFuture[Any], Exception]] = []
    run: list[bytes] = []
    for future, call in zip(batch, calls, strict=True):
        try:
            frame = channel.encode(call)
        except Exception as exc:  # noqa: BLE001 - arguments that cannot be pickled
            unsendable.append((future, exc))
            continue
        if type(frame) is bytes:
            run.append(frame)
            continue
        if run:
            writes.append(b"".join(run))
            run = []
        writes.append(frame)
    if run:
        writes.append(b"".join(run))
    return writes, unsendable
