"""What the kernel does with each message a worker sends on its data channel.

`handle_message` runs on the worker's reader thread (`WorkerConnection`) and turns the worker's
messages (the vocabulary is in `runtime/worker.py`) into calls on the worker's pool: jobs that
finished or failed, streamed output, progress, printed text, readiness, calls to other
functions. A job's exception comes back as its original type when the kernel can rebuild it.
"""

from __future__ import annotations

import pickle
from typing import TYPE_CHECKING, Any

from sieve_jupyter._errors import RemoteError, RemoteTraceback, SetupError

if TYPE_CHECKING:
    from sieve_jupyter.manager._pool import WorkerPool
    from sieve_jupyter.manager._worker import WorkerConnection

__all__ = ["handle_message", "rebuild_exception"]


def handle_message(pool: WorkerPool, worker: WorkerConnection, message: tuple[Any, ...]) -> None:
    kind = message[0]
    if kind == "result":
        _, job_id, value, started_at, finished_at = message
        pool.job_done(worker, job_id, value=value, times=(started_at, finished_at))
    elif kind == "multi":
        items = message[1]
        if all(item[0] == "result" for item in items):  # a burst of fast calls
            pool.jobs_done(worker, [(m[1], m[2], None, False, (m[3], m[4])) for m in items])
        else:
            for item in items:
                handle_message(pool, worker, item)
    elif kind == "output":
        future = worker.inflight.get(message[1])
        if future is not None:
            future._add_output(message[2])
            pool.manager.publish_output(future)
    elif kind == "error":
        _, job_id, info, restarting = message
        if restarting:
            pool.expect_exit(worker)
        pool.job_done(worker, job_id, exception=rebuild_exception(info))
    elif kind == "log":
        _, job_id, stream, text = message
        if job_id is None:  # printed by `__setup__`: the job waiting for the worker gets it
            pool.log(pool.waiting_job(), stream, text)
        else:
            pool.log(worker.inflight.get(job_id), stream, text)
    elif kind in ("skipped", "cancelled"):
        pool.job_done(worker, message[1], cancelled=True)
    elif kind == "progress":
        _, job_id, fraction, text = message
        future = worker.inflight.get(job_id)
        if future is not None:
            future.progress = (fraction, text)
            pool.manager.publish_job(future)
    elif kind == "ready":
        pool.worker_ready(worker, message[1], message[2])
    elif kind == "setup_failed":
        _setup_failed(pool, worker, message[1])
    elif kind == "undecodable":
        _calls_undecodable(pool, worker, message[1], direct=message[2])
    elif kind == "ucall":
        pool.manager.upstream_call(worker, *message[1:])
    elif kind in ("swapped", "swap_failed"):
        pool.record.on_swapped(worker, message)


def rebuild_exception(info: dict[str, Any]) -> BaseException:
    """Turn a worker's error report into an exception of the original type when possible."""
    exc: BaseException | None = None
    if info.get("pickled"):
        try:
            exc = pickle.loads(info["pickled"])
        except Exception:  # noqa: BLE001 - the type may not exist in the kernel
            exc = None
    if not isinstance(exc, BaseException):
        exc = RemoteError(info["type_name"], info["message"], info["traceback"])
    exc.__cause__ = _remote_cause(info)
    try:
        exc.remote_traceback = info["traceback"]  # type: ignore[attr-defined]
    except (AttributeError, TypeError):
        pass
    return exc


def _remote_cause(info: dict[str, Any]) -> RemoteTraceback:
    """The worker's traceback as a cause, with its frames kept apart (``frames``, ``chain``)
    for the notebook, which shows them as IPython shows local ones."""
    cause = RemoteTraceback(info["traceback"])
    cause.frames = info.get("frames") or []  # type: ignore[attr-defined]
    cause.chain = info.get("chain") or []  # type: ignore[attr-defined]
    return cause


def _setup_failed(pool: WorkerPool, worker: WorkerConnection, info: dict[str, Any]) -> None:
    error = SetupError(
        f"{pool.spec.name}: __setup__ failed in worker {worker.worker_id}: "
        f"{info['type_name']}: {info['message']}",
        info["traceback"],
    )
    error.__cause__ = _remote_cause(info)
    worker.exit_expected = True
    pool.worker_failed_to_start(worker, error)


def _calls_undecodable(
    pool: WorkerPool, worker: WorkerConnection, info: dict[str, Any], *, direct: bool
) -> None:
    """The worker could not unpickle a frame of calls (a type it cannot import): those jobs
    fail with the reason; the worker and its warm state carry on."""
    if direct:
        job_ids = [worker.direct_job] if worker.direct_job is not None else []
    else:
        job_ids = pool.oldest_unfinished_calls(worker)
    cause = rebuild_exception(info)
    for job_id in job_ids:
        error = TypeError(
            f"job {job_id}: its arguments cannot be rebuilt in the worker "
            f"({info['type_name']}: {info['message']}). Fix: pass values whose types the "
            "worker can import (plain data, numpy arrays, sieve.File, or types defined in the "
            "notebook)."
        )
        error.__cause__ = cause
        pool.job_done(worker, job_id, exception=error)
