"""The kernel-side manager: the registry of functions, their pools, the job history, events.

There is one manager per process (`get_manager()`), created on first use. It owns every worker
it starts and stops them all when the interpreter exits; workers also leave on their own when
the kernel's end of their socket closes, so a killed kernel leaves no orphans. Layers above it
hook in through `manager_created_hooks` (the notebook layer attaches to a running kernel there)
and `submit_hooks`.
"""

from __future__ import annotations

import atexit
import collections
import itertools
import os
import sys
import threading
import uuid
import warnings
import weakref
from collections.abc import Callable
from concurrent.futures import _base
from typing import TYPE_CHECKING, Any

from sieve_jupyter._config import Config, config
from sieve_jupyter._errors import (
    EnvironmentVariableError,
    FunctionNotFoundError,
    SieveError,
    SieveWarning,
    SwapError,
)
from sieve_jupyter._hooks import manager_created_hooks
from sieve_jupyter.backends import Backend, create_backend
from sieve_jupyter.manager._events import EventBus
from sieve_jupyter.manager._gpu import ManagerGpus
from sieve_jupyter.manager._jobs import JobFuture, ReleasedJob
from sieve_jupyter.manager._pool import SwapOutcome, WorkerPool
from sieve_jupyter.manager._record import FunctionRecord

if TYPE_CHECKING:
    from sieve_jupyter.runtime.messages import ErrorInfo
    from sieve_jupyter.spec import FunctionSpec

__all__ = ["Manager", "Registration", "get_manager", "manager_created_hooks"]

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def _user_stacklevel() -> int:
    """The `stacklevel` at which a warning points at the user's line (`fn.push(...)` or
    `fn.run(...)`), past however many of this package's frames lie in between."""
    frame = sys._getframe(1)
    level = 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back
        level += 1
    return level


class Registration:
    """What `Manager.register` did: ``"new"``, ``"replaced"`` (the old workers retire after
    their jobs) or ``"swapped"`` (the live workers took the new code, keeping `__setup__`),
    and for a swap, which workers took it."""

    def __init__(self, record: FunctionRecord, outcome: str, swapped: list[str] | None = None):
        self.record = record
        self.outcome = outcome
        self.swapped_workers = swapped or []


#: a future's states once its job has ended
_ENDED = (_base.FINISHED, _base.CANCELLED, _base.CANCELLED_AND_NOTIFIED)


class _Weak:
    """A history entry that does not keep its finished job's future (and so its result)
    alive: the future while something else holds it, then a `ReleasedJob` stand-in."""

    __slots__ = ("ref", "stand_in")

    def __init__(self, future: JobFuture[Any]) -> None:
        self.ref = weakref.ref(future)
        self.stand_in = ReleasedJob.of(future)

    def get(self) -> JobFuture[Any]:
        future = self.ref()
        return future if future is not None else self.stand_in


class Manager:
    """Registers functions, runs their jobs on warm workers, and reports what happens."""

    def __init__(self, cfg: Config | None = None) -> None:
        self.config = cfg or config
        self.events = EventBus()
        self.kernel_id = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.gpus = ManagerGpus(self.config)
        #: called with each new JobFuture on the submitting thread (the notebook layer uses it
        #: to remember which cell started the job)
        self.submit_hooks: list[Callable[[JobFuture[Any]], None]] = []
        self._records: dict[str, FunctionRecord] = {}
        self._backends: dict[str, Backend] = {}
        #: recent jobs, oldest first (an OrderedDict: dropping the oldest is O(1)); a job
        #: whose result lives in a worker's shared memory or Ray's object store is held
        #: weakly (`hold_weakly`)
        self._jobs: collections.OrderedDict[str, JobFuture[Any] | _Weak] = collections.OrderedDict()
        self._job_ids = itertools.count(1)
        self._lock = threading.RLock()
        self._closed = False

    # -- registry ----------------------------------------------------------------------------

    def register(
        self,
        spec: FunctionSpec,
        obj: Any,
        payload: bytes | Callable[[], bytes],
        *,
        backend: str | None = None,
        workers: int | None = None,
        setup_key: str | None = None,
        force_setup: bool = False,
        sources: dict[str, list[str]] | None = None,
    ) -> Registration:
        """Register `obj` under `spec.name`, replacing what was there.

        When the previous registration has warm workers and the same `setup_key` (`__setup__`
        and environment unchanged), the workers get the new code without running `__setup__`
        again, and this waits for each worker's answer.

        `payload` is the pickled code, or a callable that pickles it: called once, when a
        worker first needs the code (`FunctionRecord.payload`), on the thread that first runs
        or warms the function, or here for a swap into warm workers.

        Raises:
            SwapError: the new code failed to load in a warm worker. Nothing changed: the
                previous registration stays, and its code still answers calls everywhere.
        """
        record = FunctionRecord(
            spec=spec,
            obj=obj,
            code=payload,
            backend=backend or self.config.backend,
            workers=workers or self.config.workers,
            setup_key=setup_key,
            sources=sources or {},
        )
        with self._lock:
            old = self._records.get(spec.name)
            self._records[spec.name] = record
        if old is None:
            self._publish_function(record)
            return Registration(record, "new")
        pool = old.pool
        if pool is not None and not force_setup and self._can_swap(old, record):
            return self._swap(old, record, pool)
        if pool is not None:
            pool.retire()
        self._publish_function(record)
        return Registration(record, "replaced")

    @staticmethod
    def _can_swap(old: FunctionRecord, new: FunctionRecord) -> bool:
        pool = old.pool
        return (
            pool is not None
            and new.setup_key is not None
            and old.setup_key == new.setup_key
            and old.backend == new.backend
            and old.workers == new.workers
            and pool.state == "warm"
            and bool(pool.live_workers())
        )

    def _swap(self, old: FunctionRecord, record: FunctionRecord, pool: WorkerPool) -> Registration:
        try:
            record.payload  # noqa: B018 - pickled before any worker is touched
        except BaseException:
            with self._lock:
                if self._records.get(record.name) is record:
                    self._records[record.name] = old
            raise
        record.pool = pool
        record.checked = old.checked
        outcomes = pool.swap(record)
        failed: dict[str, ErrorInfo] = {w: o for w, o in outcomes.items() if isinstance(o, dict)}
        took = [w for w, o in outcomes.items() if o is None]
        if failed:
            # Put everything back as it was: the old record, and its code on the workers
            # that took the new one.
            with self._lock:
                if self._records.get(record.name) is record:
                    self._records[record.name] = old
            pool.swap(old)
            raise SwapError(_swap_failure(record, failed, took + _exited(outcomes)))
        self._publish_function(record)
        return Registration(record, "swapped", took)

    def unregister(self, name: str) -> None:
        with self._lock:
            record = self._records.pop(name, None)
        if record is not None and record.pool is not None:
            record.pool.close()
        self.events.emit("function_removed", {"name": name})

    def record(self, name: str) -> FunctionRecord:
        """The record for `name` ("name" or "user/name").

        Raises:
            FunctionNotFoundError: naming the function and listing the known ones.
        """
        user, _, short = name.rpartition("/")
        with self._lock:
            record = self._records.get(short)
            known = sorted(self._records)
        if record is None or (user and user != self.config.user):
            listing = ", ".join(f"{self.config.user}/{n}" for n in known) or "none yet"
            raise FunctionNotFoundError(
                f"function {name!r} is not registered in this kernel (known: {listing}). "
                "Fix: run the cell that defines it, or check the name and user "
                "(sieve.configure(user=...))."
            )
        return record

    def records(self) -> list[FunctionRecord]:
        with self._lock:
            return list(self._records.values())

    def functions(self) -> list[dict[str, Any]]:
        return [r.describe() for r in self.records()]

    # -- jobs --------------------------------------------------------------------------------

    def submit(
        self, target: str | FunctionRecord, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> JobFuture[Any]:
        """Queue one call; returns its future at once (workers start in the background)."""
        pool, future = self._new_job(target, args, kwargs)
        self._accept(future)
        pool.submit(future)
        return future

    def run(
        self,
        target: str | FunctionRecord,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        wait: float | None = None,
    ) -> JobFuture[Any]:
        """Start one call for a caller that will wait for it (`.run()`); returns its future.

        When a worker is idle, this thread writes the call and reads the outcome itself
        (`_direct.py`), so the returned future is usually done already; otherwise the job is
        queued as by `submit`. An interrupt while waiting cancels the job. `wait` bounds the
        time this thread spends waiting (an event loop's thread): a call still running then
        finishes in the background, and a function whose calls usually take longer is queued.
        """
        pool, future = self._new_job(target, args, kwargs)
        self._accept(future)
        try:
            direct = pool.try_direct(future, wait)
        except BaseException:
            future.cancel()
            raise
        if not direct:
            try:
                pool.submit(future, waited=wait is None)
            except BaseException:
                future.cancel()
                raise
        return future

    def _new_job(
        self, target: str | FunctionRecord, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[WorkerPool, JobFuture[Any]]:
        record, pool = self._pool(target)
        pool.ensure_open()  # before a job exists: a refused push leaves no job behind
        spec = record.spec
        future: JobFuture[Any] = JobFuture(
            f"{spec.name}-{next(self._job_ids)}",
            spec.name,
            args,
            kwargs,
            streaming=spec.is_generator,
            canceller=pool.cancel,
            on_cancelled=pool.publish_job,
        )
        for hook in self.submit_hooks:
            hook(future)
        return pool, future

    def _pool(self, target: str | FunctionRecord) -> tuple[FunctionRecord, WorkerPool]:
        """The record's pool, created on first use, after the checks that must pass first."""
        record = target if isinstance(target, FunctionRecord) else self.record(target)
        if not record.checked:
            self._preflight(record)
        pool = record.pool
        if pool is None:
            with self._lock:
                if record.pool is None:
                    record.pool = WorkerPool(self, record, self.backend(record.backend))
                pool = record.pool
        return record, pool

    def warm(self, target: str | FunctionRecord) -> None:
        """Start a function's workers now instead of on its first job, so `__setup__` runs
        ahead of the first call (a server is ready only once it has). How it goes is told by
        `function` events (state starting, then warm or error).

        Raises:
            SieveError: what a push would raise before queuing (a missing Env, a GPU ...).
        """
        self._pool(target)[1].start()

    def _accept(self, future: JobFuture[Any]) -> None:
        """Enter a new job in the history and announce it (before it can start: published
        after, "queued" could arrive after "processing" or even "finished")."""
        self._remember(future)
        wanted = self.events.wanted
        if wanted is None or "job" in wanted:
            self.events.emit("job", future.snapshot())

    def _preflight(self, record: FunctionRecord) -> None:
        """Checks that must pass before any worker starts: env values, backend support, GPUs,
        and the code pickles."""
        self.worker_environment(record.spec)
        backend = self.backend(record.backend)
        for note in backend.check(record.spec):
            warnings.warn(
                f"{record.spec.name}: {note}", SieveWarning, stacklevel=_user_stacklevel()
            )
        backend.check_workers(record.spec, record.workers)
        if not backend.allocates_gpus:
            self.gpus.check_workers(record.spec, record.workers)
        record.payload  # noqa: B018 - pickled here, so what cannot be raises to the caller
        record.checked = True

    def _remember(self, future: JobFuture[Any]) -> None:
        jobs = self._jobs
        with self._lock:
            jobs[future.job_id] = future
            limit = self.config.job_history
            # Forget the oldest finished jobs beyond the limit (amortised O(1) per job); an old
            # job still running keeps its place, and the ones after it, until it ends. One job
            # in, one out, rather than in batches: freeing as fast as allocating keeps the
            # garbage collector's young generation from filling (batches tripled its runs).
            while len(jobs) > limit:
                oldest = next(iter(jobs.values()))
                if not isinstance(oldest, _Weak) and oldest._state not in _ENDED:
                    break
                jobs.popitem(last=False)

    def hold_weakly(self, future: JobFuture[Any]) -> None:
        """Keep the finished `future` in the history only while something else holds it: its
        result was rebuilt on a worker's shared memory (or is held in Ray's object store), and
        a history that pinned it would make the worker take fresh memory for every large
        result (and keep up to `job_history` of them alive: Ray would spill them to disk).
        Once the future is gone the history lists a `ReleasedJob`: the same job, finished,
        without its result."""
        entry = _Weak(future)
        with self._lock:
            if self._jobs.get(future.job_id) is future:
                self._jobs[future.job_id] = entry

    def job(self, job_id: str) -> JobFuture[Any]:
        try:
            entry = self._jobs[job_id]
        except KeyError:
            raise SieveError(
                f"no job {job_id!r} in this kernel. Fix: `%sieve jobs` lists the recent ones."
            ) from None
        return entry.get() if isinstance(entry, _Weak) else entry

    def jobs(self, limit: int | None = None) -> list[JobFuture[Any]]:
        """Recent jobs, newest first."""
        jobs = [e.get() if isinstance(e, _Weak) else e for e in self._jobs.values()]
        jobs.reverse()
        return jobs if limit is None else jobs[:limit]

    # -- lifecycle ---------------------------------------------------------------------------

    def backend(self, name: str) -> Backend:
        with self._lock:
            backend = self._backends.get(name)
            if backend is None:
                backend = self._backends[name] = create_backend(name)
            return backend

    def stop(self, name: str) -> None:
        """Stop a function's workers (queued and running jobs are cancelled)."""
        pool = self.record(name).pool
        if pool is not None:
            pool.stop()

    def restart(self, name: str) -> None:
        """Replace a function's workers with fresh ones (`__setup__` runs again)."""
        pool = self.record(name).pool
        if pool is not None:
            pool.restart()

    def stop_all(self) -> None:
        for record in self.records():
            if record.pool is not None:
                record.pool.stop()

    def close(self) -> None:
        """Stop every worker and release the backends (runs at interpreter exit)."""
        if self._closed:
            return
        self._closed = True
        self.stop_all()
        for backend in list(self._backends.values()):
            try:
                backend.close()
            except Exception:  # noqa: BLE001, S110 - best effort at exit
                pass

    # -- what workers need -------------------------------------------------------------------

    def worker_environment(self, spec: FunctionSpec) -> dict[str, str]:
        """Values of the function's declared `sieve.Env` variables, read from this kernel.

        Raises:
            EnvironmentVariableError: a variable without a default is not set.
        """
        values: dict[str, str] = {}
        for env in spec.env:
            value = os.environ.get(env.name, env.default)
            if value is None:
                about = f" ({env.description})" if env.description else ""
                raise EnvironmentVariableError(
                    f"{spec.name}: environment variable {env.name}{about} is not set in this "
                    f"process (the kernel, or the script) and has no default. Fix: "
                    f"os.environ[{env.name!r}] = '...' before the call (or export it before "
                    "starting Jupyter or the script), then run again."
                )
            values[env.name] = value
        return values

    def labels(self, spec: FunctionSpec) -> dict[str, str]:
        return {
            "sieve-jupyter.kernel": self.kernel_id,
            "sieve-jupyter.function": spec.name,
            "sieve-jupyter.spec-hash": spec.environment.content_hash(),
        }

    def _publish_function(self, record: FunctionRecord) -> None:
        record.publish(self.events)


def _exited(outcomes: dict[str, SwapOutcome]) -> list[str]:
    return [w for w, o in outcomes.items() if o == "exited"]


def _swap_failure(record: FunctionRecord, failed: dict[str, ErrorInfo], others: list[str]) -> str:
    what = f"{record.spec.kind} {record.name!r}"
    parts = [
        f"{what}: the new code failed to load in "
        f"{'worker' if len(failed) == 1 else 'workers'} {', '.join(failed)}:"
    ]
    for info in failed.values():
        parts.append(info["traceback"].rstrip())
    everyone = sorted([*failed, *others])
    parts.append(
        f"Nothing changed: the previous code still answers calls on "
        f"{'worker' if len(everyone) == 1 else 'workers'} {', '.join(everyone)}, with its "
        "__setup__ state. Fix: correct the error and run the cell again, or restart the "
        "workers with the new code (the magics' --fresh-setup, or .restart())."
    )
    return "\n".join(parts)


_manager: Manager | None = None
_manager_lock = threading.Lock()


def get_manager() -> Manager:
    """The process's manager, created (and registered for cleanup at exit) on first use."""
    global _manager
    if _manager is None:
        with _manager_lock:
            if _manager is None:
                manager = Manager()
                atexit.register(manager.close)
                _manager = manager
                for hook in manager_created_hooks:
                    hook(manager)
    return _manager
