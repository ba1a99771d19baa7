"""Direct calls: a `.run()` that finds a worker idle talks to it from the calling thread.

The pool's usual path queues a call, writes it from whichever thread is free, and learns the
outcome on the worker's reader thread, which then wakes the caller. Each hand-off between
threads costs tens of microseconds in CPython (the woken thread must win the GIL back), several
times a raw round trip. So when `.run()` finds a worker with nothing to do, the calling thread
takes the worker's *lane*: it writes the call, flagged `DIRECT_CALL`, then reads the outcome
from the worker's reply channel itself. A warm call then costs about one round trip.

The job is still an ordinary in-flight job of its worker: cancelling it, the worker crashing,
`%sieve jobs` and the side panel all see it as usual. Only a plain result comes back on the
reply channel; anything else (printed text, progress, errors, cancellation) travels on the data
channel in order and the reply channel just says ``moved(job)``, so the reader thread settles
the job exactly as for a pushed one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sieve_jupyter.runtime.protocol import (
    DIRECT_CALL,
    Channel,
    ChannelClosed,
    UndecodableMessage,
    encode,
)

if TYPE_CHECKING:
    from sieve_jupyter.manager._jobs import JobFuture
    from sieve_jupyter.manager._pool import WorkerPool
    from sieve_jupyter.manager._worker import WorkerConnection

__all__ = ["call_direct"]


def call_direct(
    pool: WorkerPool, future: JobFuture, accept: Callable[[JobFuture], None]
) -> bool:
    """Run `future` on an idle worker of `pool`, writing and reading on this thread.

    Returns False, having done nothing, when no worker is idle (the caller queues the job
    instead). Returns True once the job is settled, or handed to the reader thread (``moved``,
    or the worker died: the pool's usual crash handling settles it). An interrupt while waiting
    propagates at once; a helper thread then reads the outcome so the lane is freed.

    `accept(future)` enters the job in the manager's history. Bookkeeping no one can observe
    yet is done after the call is written, while the worker runs it; what listeners see
    (status events) goes out first, so they always see a job's states in order.
    """
    worker = pool.claim_idle_worker(future)
    if worker is None:
        return False
    job_id = future.job_id
    manager = pool.manager
    announced = bool(manager.events)  # someone listens
    written = False
    try:
        if announced:
            accept(future)
            if future._set_started(worker.worker_id):
                manager.publish_job(future)
        frame = encode(("call", job_id, future.args, future.kwargs), DIRECT_CALL)
        assert worker.data is not None
        written = True  # (a frame is written whole or not at all: see Channel.write)
        worker.data.write(frame)
    except ChannelClosed:
        # The worker is going away: its reader requeues the job on a replacement.
        pool.unclaim(worker, future, requeue=True)
        return True
    except Exception as exc:  # noqa: BLE001 - an argument that cannot be pickled
        pool.unclaim(worker, future, requeue=False)
        pool.fail_unsendable(future, exc)
        return True
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
        if not announced:
            accept(future)
    if not announced:
        future._set_started(worker.worker_id)
    assert worker.reply is not None
    worker.reply.spin = pool.reply_poll_seconds()
    try:
        message = _read_outcome(worker.reply, job_id)
    except (ChannelClosed, UndecodableMessage) as exc:
        _unreadable(pool, worker, future, exc)
        return True
    except BaseException:
        # Interrupted (the notebook's stop button): the caller cancels the job; the outcome
        # the worker then sends is read in the background, so the lane is not left stuck.
        _read_in_background(pool, worker, future)
        raise
    _settle(pool, worker, future, message)
    return True


def _settle(
    pool: WorkerPool, worker: WorkerConnection, future: JobFuture, message: tuple[Any, ...]
) -> None:
    worker.lane.release()
    if message[0] == "result":
        pool.finish_direct(worker, future, message[2], message[3], message[4])
    # "moved": the outcome follows on the data channel, where the reader thread settles it


def _read_outcome(reply: Channel, job_id: str) -> tuple[Any, ...]:
    """The next message about `job_id` on a reply channel. (Anything else there is the answer
    to a call abandoned without being written whole, which no one waits for.)"""
    while True:
        message: tuple[Any, ...] = reply.recv()
        if message[1] == job_id or message[1] is None:
            return message


def _read_in_background(pool: WorkerPool, worker: WorkerConnection, future: JobFuture) -> None:
    threading.Thread(
        target=_read_later, args=(pool, worker, future), name=f"sieve-lane-{future.job_id}",
        daemon=True,
    ).start()


def _read_later(pool: WorkerPool, worker: WorkerConnection, future: JobFuture) -> None:
    assert worker.reply is not None
    try:
        message = _read_outcome(worker.reply, future.job_id)
    except (ChannelClosed, UndecodableMessage) as exc:
        _unreadable(pool, worker, future, exc)
        return
    _settle(pool, worker, future, message)


def _unreadable(
    pool: WorkerPool, worker: WorkerConnection, future: JobFuture, exc: Exception
) -> None:
    worker.lane.release()
    if isinstance(exc, ChannelClosed):
        return  # the worker died: its reader blames the running job (this one) and replaces it
    error = TypeError(
        f"job {future.job_id}: its return value cannot be rebuilt in the kernel ({exc}). "
        "Fix: return plain data, numpy arrays or sieve.File, or install the module that "
        "defines its type in the kernel too."
    )
    error.__cause__ = exc.__cause__
    pool.job_done(worker, future.job_id, exception=error)
