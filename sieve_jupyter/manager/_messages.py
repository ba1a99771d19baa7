"""What the kernel does with each message a worker sends (on its data connection, or through
its backend's link).

`handle` runs on the thread that reads a worker's messages (a connected worker's reader, a
linked worker's link) and turns each message of the vocabulary (`runtime/messages.py`) into a
call on the worker's pool: jobs that finished or failed, streamed output, progress, printed
text, readiness, swaps, and calls to other functions (`UpstreamCall`, answered with
`send_control`). A job's exception comes back as its original type when the kernel can rebuild
it.
"""

from __future__ import annotations

import concurrent.futures
import pickle
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sieve_jupyter._errors import (
    FunctionNotFoundError,
    JobCancelledError,
    RemoteError,
    RemoteTraceback,
    SetupError,
    SieveError,
)
from sieve_jupyter._hooks import name_resolvers
from sieve_jupyter.manager._record import FunctionRecord
from sieve_jupyter.runtime.messages import (
    Cancelled,
    Error,
    ErrorInfo,
    Log,
    Message,
    Output,
    Progress,
    Ready,
    Reply,
    Result,
    SetupFailed,
    Skipped,
    SwapFailed,
    Swapped,
    Undecodable,
    UpstreamCall,
)

if TYPE_CHECKING:
    from sieve_jupyter.manager._pool import WorkerPool
    from sieve_jupyter.manager._pool_base import PoolHost
    from sieve_jupyter.manager._worker_base import Worker

__all__ = ["handle", "rebuild_exception"]


def handle(pool: WorkerPool, worker: Worker, message: Message) -> None:
    """Act on one message from `worker` (on its reader thread)."""
    handler = _HANDLERS.get(type(message))
    if handler is None:
        raise ValueError(f"a worker sent {type(message).__name__} on its data connection")
    handler(pool, worker, message)


def _result(pool: WorkerPool, worker: Worker, message: Result) -> None:
    pool.jobs_done(worker, [message])


def _error(pool: WorkerPool, worker: Worker, message: Error) -> None:
    if message.restarting:
        pool.expect_exit(worker)
    pool.job_failed(worker, message.job, rebuild_exception(message.error))


def _cancelled(pool: WorkerPool, worker: Worker, message: Skipped | Cancelled) -> None:
    pool.job_cancelled(worker, message.job)


def _output(pool: WorkerPool, worker: Worker, message: Output) -> None:
    pool.job_output(worker, message.job, message.item)


def _log(pool: WorkerPool, worker: Worker, message: Log) -> None:
    pool.job_log(worker, message.job, message.stream, message.text)


def _progress(pool: WorkerPool, worker: Worker, message: Progress) -> None:
    pool.job_progress(worker, message.job, message.fraction, message.message)


def _ready(pool: WorkerPool, worker: Worker, message: Ready) -> None:
    pool.worker_ready(worker, message.setup_seconds, message.setup_at)


def _setup_failed(pool: WorkerPool, worker: Worker, message: SetupFailed) -> None:
    info = message.error
    error = SetupError(
        f"{pool.spec.name}: __setup__ failed in worker {worker.worker_id}: "
        f"{info['type_name']}: {info['message']}",
        info["traceback"],
    )
    error.__cause__ = _remote_cause(info)
    pool.worker_failed_to_start(worker, error, expected_exit=True)


def _swapped(pool: WorkerPool, worker: Worker, message: Swapped) -> None:
    pool.swap_answered(worker, message.swap, None)


def _swap_failed(pool: WorkerPool, worker: Worker, message: SwapFailed) -> None:
    pool.swap_answered(worker, message.swap, message.error)


def _undecodable(pool: WorkerPool, worker: Worker, message: Undecodable) -> None:
    """The worker could not unpickle a call (a type it cannot import): that job fails with the
    reason; the worker and its warm state carry on."""
    info = message.error
    job_id = pool.undecodable_call(worker, direct=message.direct)
    if job_id is not None:
        error = TypeError(
            f"job {job_id}: its arguments cannot be rebuilt in the worker "
            f"({info['type_name']}: {info['message']}). Fix: pass values whose types the "
            "worker can import (plain data, numpy arrays, sieve.File, or types defined in the "
            "notebook)."
        )
        error.__cause__ = rebuild_exception(info)
        pool.job_failed(worker, job_id, error)


def _upstream_call(pool: WorkerPool, worker: Worker, message: UpstreamCall) -> None:
    """A function called another one from inside its worker: run it and reply when it ends."""

    def reply(ok: bool, value: Any) -> None:
        try:
            worker.send_control(Reply(message.request, ok, value))
        except Exception as exc:  # noqa: BLE001 - e.g. a result that cannot be pickled
            worker.send_control(Reply(message.request, False, SieveError(str(exc))))

    host = pool.host
    name = message.name
    user, _, short = name.rpartition("/")
    if not name_resolvers or (
        ":" not in short and (not user or user == host.config.user) and _registered(host, name)
    ):
        _submit_upstream(pool, message, reply, lambda: _local_record(pool, short))
        return
    # Finding a deployment may take a moment (the registry, a health check): not on the
    # reader thread, which the worker's other messages wait for.
    threading.Thread(
        target=_submit_upstream,
        args=(pool, message, reply, lambda: _elsewhere(host, name)),
        name=f"sieve-upstream-{message.request}",
        daemon=True,
    ).start()


def _registered(host: PoolHost, name: str) -> bool:
    try:
        host.record(name)
    except FunctionNotFoundError:
        return False
    return True


def _local_record(pool: WorkerPool, name: str) -> FunctionRecord:
    record = pool.host.record(name)
    if record.pool is pool and record.workers == 1:
        # Its only worker is busy running the very call that would wait: say so instead of
        # hanging forever.
        raise SieveError(
            f"{record.name} calls itself through .run()/.push() from its only worker, which "
            "is busy running the calling job, so the call would wait forever. Fix: give it "
            "workers=2 or more, or call the Python function directly."
        )
    return record


def _elsewhere(host: PoolHost, name: str) -> Any:
    """A deployment named `name`; failing that, a function of this process with the same short
    name (code exported from a notebook says its author's user, which a server started apart
    from it does not share)."""
    for resolver in name_resolvers:
        found = resolver.resolve(name)
        if found is not None:
            return found
    user, _, short = name.rpartition("/")
    if ":" not in short and _registered(host, short):
        return host.record(short)
    deployed = [n for resolver in name_resolvers for n in resolver.known()]
    local = ", ".join(f"{host.config.user}/{r}" for r in _names(host)) or "none"
    raise FunctionNotFoundError(
        f"function {name!r} is neither registered here (functions: {local}) nor deployed "
        f"(deployments: {', '.join(deployed) or 'none'}). Fix: deploy it, or check the name."
    )


def _names(host: PoolHost) -> list[str]:
    records = getattr(host, "records", None)
    return [r.name for r in records()] if callable(records) else []


def _submit_upstream(
    pool: WorkerPool,
    message: UpstreamCall,
    reply: Callable[[bool, Any], None],
    find: Callable[[], Any],
) -> None:
    """Submit the chained call to what `find` returns (a record of this process, or a handle
    on a deployment) and reply to the calling worker when it ends."""
    try:
        target = find()
        if isinstance(target, FunctionRecord):
            future = pool.host.submit(target, message.args, message.kwargs)
        else:
            future = target.push(*message.args, **message.kwargs)
    except Exception as exc:  # noqa: BLE001 - reported to the calling worker
        reply(False, exc)
        return
    future.parent_job = message.job

    def done(f: concurrent.futures.Future[Any]) -> None:
        if f.cancelled():
            reply(False, JobCancelledError(f"job {future.job_id} was cancelled"))
        elif f.exception() is not None:
            reply(False, f.exception())
        else:
            reply(True, f.result())

    future.add_done_callback(done)


_HANDLERS: dict[type[Any], Callable[[WorkerPool, Worker, Any], None]] = {
    Result: _result,
    Error: _error,
    Skipped: _cancelled,
    Cancelled: _cancelled,
    Output: _output,
    Log: _log,
    Progress: _progress,
    Ready: _ready,
    SetupFailed: _setup_failed,
    Swapped: _swapped,
    SwapFailed: _swap_failed,
    Undecodable: _undecodable,
    UpstreamCall: _upstream_call,
}


def rebuild_exception(info: ErrorInfo) -> BaseException:
    """Turn a worker's error report into an exception of the original type when possible."""
    exc: BaseException | None = None
    pickled = info["pickled"]
    if pickled:
        try:
            exc = pickle.loads(pickled)  # noqa: S301 - from our authenticated worker
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


def _remote_cause(info: ErrorInfo) -> RemoteTraceback:
    """The worker's traceback as a cause, with its frames kept apart (``frames``, ``chain``)
    for the notebook, which shows them as IPython shows local ones."""
    cause = RemoteTraceback(info["traceback"])
    cause.frames = info.get("frames") or []  # type: ignore[attr-defined]
    cause.chain = info.get("chain") or []  # type: ignore[attr-defined]
    return cause
