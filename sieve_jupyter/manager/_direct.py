"""Direct calls: a `.run()` that finds a worker idle talks to it from the calling thread.

The pool's usual path queues a call, writes it from whichever thread is free, and learns the
outcome on the worker's reader thread, which then wakes the caller. Each hand-off between
threads costs tens of microseconds in CPython (the woken thread must win the GIL back), several
times a raw round trip. So when `.run()` finds a worker with nothing to do, the pool claims the
worker's *lane* for the calling thread, which writes the call, flagged `DIRECT_CALL`, then reads
the outcome from the worker's reply connection itself. A warm call then costs about one round
trip.

The job is still an ordinary in-flight job of its worker: cancelling it, the worker crashing,
`%sieve jobs` and the side panel all see it as usual. Only a plain `Result` comes back on the
reply connection; anything else (printed text, progress, errors, cancellation) travels on the
data connection in order and the reply connection just says `Moved`, so the reader thread
settles the job exactly as for a pushed one. This module does the I/O; the pool keeps the books.
"""

from __future__ import annotations

import os
import threading
import time
from typing import TYPE_CHECKING, Any

from sieve_jupyter.manager._affinity import FOLLOW_MAX_SECONDS
from sieve_jupyter.runtime.messages import Moved, Result, pack_call, unpack
from sieve_jupyter.runtime.protocol import (
    DIRECT_CALL,
    SLEEP_AFTER,
    Channel,
    ChannelClosed,
    UndecodableMessage,
)

if TYPE_CHECKING:
    from sieve_jupyter.manager._jobs import JobFuture
    from sieve_jupyter.manager._pool import WorkerPool
    from sieve_jupyter.manager._worker import WorkerConnection

__all__ = ["call"]


def call(
    pool: WorkerPool, worker: WorkerConnection, future: JobFuture[Any], wait: float | None = None
) -> None:
    """Run `future` on `worker`, whose lane and send lock the pool claimed for this thread.

    Returns once the job is settled, or handed to the reader thread (`Moved`, or the worker
    died: the pool's usual crash handling settles it). An interrupt while waiting propagates
    at once; a helper thread then reads the outcome, so the lane is freed. With `wait`, this
    thread waits that many seconds at most: a call still running then is left to a helper
    thread, which settles the job when its outcome comes (an event loop must not stall on a
    slow call).
    """
    job_id = future.job_id
    listened = pool.events.wants("job")  # (someone follows jobs' states)
    written = follow = False
    try:
        follow = _follow_caller(pool, worker)
        if listened and future._set_started(worker.worker_id):
            pool.publish_job(future)  # before the call: listeners see the states in order
        assert worker.data is not None
        flags = DIRECT_CALL | SLEEP_AFTER if follow else DIRECT_CALL
        frame = worker.data.encode(pack_call(job_id, future.args, future.kwargs), flags)
        written = True  # (a frame is written whole or not at all: see Channel.write)
        worker.data.write(frame)
    except ChannelClosed:
        # The worker is going away: its reader requeues the job on a replacement.
        pool.unclaim(worker, future, requeue=True)
        return
    except Exception as exc:  # noqa: BLE001 - an argument that cannot be pickled
        pool.unclaim(worker, future, requeue=False)
        pool.fail_unsendable(future, exc)
        return
    except BaseException:
        # Interrupted (the notebook's stop button). The caller cancels the job; if the call
        # went out, the worker's answer to that is read in the background, freeing the lane.
        if written:
            _read_in_background(pool, worker, future)
        else:
            pool.unclaim(worker, future, requeue=False)
        raise
    finally:
        worker.send_lock.release()
    if not listened:
        future._set_started(worker.worker_id)
    assert worker.reply is not None
    # A followed worker runs on this thread's CPU: this thread yields to it until it answers
    # rather than sleep, since the answer waking a sleeping caller would move the caller to
    # the other CPU (see `CallerCpu.follow`), and yielding costs no CPU the worker needs.
    worker.reply.spin = FOLLOW_MAX_SECONDS if follow else pool.reply_poll_seconds()
    if follow:
        # The worker, woken by the call, waits for this CPU: let it answer before looking,
        # so the first read finds the answer (a read that finds nothing costs an exception).
        os.sched_yield()
    if wait is not None and not (worker.reply.pending() or worker.reply.readable_within(wait)):
        _read_in_background(pool, worker, future)
        return
    try:
        outcome = _read_outcome(worker.reply, job_id)
    except (ChannelClosed, UndecodableMessage) as exc:
        _unreadable(pool, worker, future, exc)
        return
    except BaseException:
        # Interrupted while waiting: the caller cancels the job; the outcome the worker then
        # sends is read in the background, so the lane is not left stuck.
        _read_in_background(pool, worker, future)
        raise
    worker.answered_at = time.perf_counter()
    _settle(pool, worker, future, outcome)


def _follow_caller(pool: WorkerPool, worker: WorkerConnection) -> bool:
    """Whether the call goes to the worker on the calling thread's CPU (see `_affinity.py`),
    which is then where the worker runs: for a quick function whose worker is asleep. A worker
    answering calls back to back (its last answer came less than its polling time ago) is
    reached faster on its own CPU, polling, as long as the calls keep coming; then, as for
    calls that are not quick, the worker may run anywhere again. (A followed call tells the
    worker not to poll afterwards, so the first of a run of calls after it wakes the worker
    on its own CPU once.)"""
    cpu = worker.cpu
    if cpu is None:
        return False
    if pool.follows_caller() and time.perf_counter() - worker.answered_at >= pool.busy_poll_seconds:
        return cpu.follow()
    cpu.release()
    return False


def _settle(
    pool: WorkerPool, worker: WorkerConnection, future: JobFuture[Any], outcome: Result | Moved
) -> None:
    # (the job is settled before the lane is free: a worker that exits meanwhile waits for the
    # lane before it blames its running job)
    try:
        if type(outcome) is Result:
            reply = worker.reply
            shared = reply is not None and reply.shared
            pool.finish_direct(worker, future, outcome, shared=shared)
        # Moved: the outcome follows on the data connection, where the reader thread settles it
    finally:
        worker.lane.release()


def _read_outcome(reply: Channel, job_id: str) -> Result | Moved:
    """The next message about `job_id` on a reply connection. (Anything else there is the
    answer to a call abandoned without being written whole, which no one waits for.)"""
    while True:
        outcome = unpack(reply.recv())
        if not isinstance(outcome, (Result, Moved)):
            raise UndecodableMessage(f"{type(outcome).__name__} on the reply connection")
        if outcome.job == job_id or outcome.job is None:
            return outcome


def _read_in_background(pool: WorkerPool, worker: WorkerConnection, future: JobFuture[Any]) -> None:
    threading.Thread(
        target=_read_later,
        args=(pool, worker, future),
        name=f"sieve-lane-{future.job_id}",
        daemon=True,
    ).start()


def _read_later(pool: WorkerPool, worker: WorkerConnection, future: JobFuture[Any]) -> None:
    assert worker.reply is not None
    try:
        outcome = _read_outcome(worker.reply, future.job_id)
    except (ChannelClosed, UndecodableMessage) as exc:
        _unreadable(pool, worker, future, exc)
        return
    _settle(pool, worker, future, outcome)


def _unreadable(
    pool: WorkerPool, worker: WorkerConnection, future: JobFuture[Any], exc: Exception
) -> None:
    try:
        if isinstance(exc, ChannelClosed):
            return  # the worker died: its reader blames the running job (this one)
        error = TypeError(
            f"job {future.job_id}: its return value cannot be rebuilt in the kernel ({exc}). "
            "Fix: return plain data, numpy arrays or sieve.File, or install the module that "
            "defines its type in the kernel too."
        )
        error.__cause__ = exc.__cause__
        pool.job_failed(worker, future.job_id, error)
    finally:
        worker.lane.release()
