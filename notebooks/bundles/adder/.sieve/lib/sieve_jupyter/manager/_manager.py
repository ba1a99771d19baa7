"""The kernel-side manager: the registry of functions, their pools, jobs and events.

There is one manager per process (`get_manager()`), created on first use. It owns every worker
it starts and stops them all when the interpreter exits; workers also leave on their own when
the kernel's end of their socket closes, so a killed kernel leaves no orphans.
"""

from __future__ import annotations

import atexit
import collections
import concurrent.futures
import itertools
import os
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sieve_jupyter._config import Config, config
from sieve_jupyter._errors import (
    EnvironmentVariableError,
    FunctionNotFoundError,
    GpuUnavailableError,
    SieveError,
    SieveWarning,
)
from sieve_jupyter.backends import Backend, GpuAssignment, create_backend
from sieve_jupyter.manager._direct import call_direct
from sieve_jupyter.manager._events import EventBus
from sieve_jupyter.manager._jobs import JobFuture
from sieve_jupyter.manager._pool import WorkerPool

if TYPE_CHECKING:
    from sieve_jupyter.manager._worker import WorkerConnection
    from sieve_jupyter.spec import FunctionSpec

__all__ = ["FunctionRecord", "Manager", "SieveWarning", "get_manager"]


@dataclass(eq=False)
class FunctionRecord:
    """A registered function: its spec, the object shipped to workers, and its pool."""

    spec: FunctionSpec
    obj: Any
    payload: bytes
    backend: str
    workers: int
    #: fingerprint of `__setup__` + environment; equal keys allow a hot swap (see `register`)
    setup_key: str | None = None
    #: source lines of the user's code by file name, so worker tracebacks can quote them
    #: where the files do not exist (containers, bundles)
    sources: dict[str, list[str]] = field(default_factory=dict)
    pool: WorkerPool | None = None
    registered_at: float = field(default_factory=time.time)
    checked: bool = False
    swap_listeners: list[Callable[[Any, tuple[Any, ...]], None]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.spec.name

    def on_swapped(self, worker: WorkerConnection, message: tuple[Any, ...]) -> None:
        for listener in list(self.swap_listeners):
            listener(worker, message)

    def describe(self) -> dict[str, Any]:
        pool = self.pool
        return {
            "name": self.spec.name,
            "kind": self.spec.kind,
            "backend": self.backend,
            "state": pool.state if pool is not None else "idle",
            "workers": pool.describe() if pool is not None else [],
            "size": self.workers,
            "spec_hash": self.spec.environment.content_hash(),
            "queued": len(pool.queue) if pool is not None else 0,
            "error": pool.last_error if pool is not None else None,
        }


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


class _Gpus:
    """The manager's view of GPUs: an allocator built on first use (nvidia-smi runs once)."""

    def __init__(self, cfg: Config) -> None:
        self._config = cfg
        self._allocator: Any = None
        self._lock = threading.Lock()

    def _get(self) -> Any:
        with self._lock:
            if self._allocator is None:
                from sieve_jupyter.manager._gpu import GpuAllocator

                self._allocator = GpuAllocator()
            # Follow the setting as it is now: `sieve.configure(gpu_fallback="cpu")` after a
            # first GPU error must take effect (the allocator outlives the setting it saw).
            self._allocator.cpu_fallback = self._config.gpu_fallback == "cpu"
            return self._allocator

    def acquire_for(self, spec: FunctionSpec, worker_id: str) -> GpuAssignment | None:
        if spec.gpu is None or spec.gpu.is_cpu:
            return None
        assignment: GpuAssignment | None = self._get().acquire(spec.gpu, worker_id)
        return assignment

    def release(self, worker_id: str) -> None:
        if self._allocator is not None:
            self._allocator.release(worker_id)


class Manager:
    """Registers functions, runs their jobs on warm workers, and reports what happens."""

    def __init__(self, cfg: Config | None = None) -> None:
        self.config = cfg or config
        self.events = EventBus()
        self.kernel_id = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.gpus = _Gpus(self.config)
        #: called with each new JobFuture on the submitting thread (the notebook layer uses it
        #: to remember which cell started the job)
        self.submit_hooks: list[Callable[[JobFuture], None]] = []
        self._records: dict[str, FunctionRecord] = {}
        self._backends: dict[str, Backend] = {}
        #: recent jobs, oldest first (an OrderedDict: dropping the oldest is O(1))
        self._jobs: collections.OrderedDict[str, JobFuture] = collections.OrderedDict()
        self._job_ids = itertools.count(1)
        self._lock = threading.RLock()
        self._closed = False

    # -- registry ----------------------------------------------------------------------------

    def register(
        self,
        spec: FunctionSpec,
        obj: Any,
        payload: bytes,
        *,
        backend: str | None = None,
        workers: int | None = None,
        setup_key: str | None = None,
        force_setup: bool = False,
        sources: dict[str, list[str]] | None = None,
    ) -> tuple[FunctionRecord, str]:
        """Register `obj` under `spec.name`, replacing what was there.

        Returns the record and what happened: ``"new"``, ``"replaced"`` (old workers retire
        after their jobs) or ``"swapped"`` (same `__setup__` and environment: the live workers
        get the new code without running `__setup__` again).
        """
        record = FunctionRecord(
            spec=spec,
            obj=obj,
            payload=payload,
            backend=backend or self.config.backend,
            workers=workers or self.config.workers,
            setup_key=setup_key,
            sources=sources or {},
        )
        with self._lock:
            old = self._records.get(spec.name)
            self._records[spec.name] = record
        outcome = "new"
        if old is not None:
            outcome = "replaced"
            pool = old.pool
            if (
                pool is not None
                and not force_setup
                and setup_key is not None
                and old.setup_key == setup_key
                and old.backend == record.backend
                and old.workers == record.workers
                and pool.state == "warm"
                and pool.live_workers()
            ):
                pool.record = record
                record.pool = pool
                record.checked = old.checked
                for worker in pool.live_workers():
                    pool.swap(worker)
                outcome = "swapped"
            elif pool is not None:
                pool.retire()
        self.publish_function(record)
        return record, outcome

    def unregister(self, name: str) -> None:
        with self._lock:
            record = self._records.pop(name, None)
        if record is not None and record.pool is not None:
            record.pool.stop()
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
    ) -> JobFuture:
        """Queue one call; returns its future at once (workers start in the background)."""
        pool, future = self._new_job(target, args, kwargs)
        self._accept(future)
        pool.submit(future)
        return future

    def run(
        self, target: str | FunctionRecord, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> JobFuture:
        """Start one call for a caller that will wait for it (`.run()`); returns its future.

        When a worker is idle, this thread writes the call and reads the outcome itself
        (`_direct.py`), so the returned future is usually done already; otherwise the job is
        queued as by `submit`. An interrupt while waiting cancels the job.
        """
        pool, future = self._new_job(target, args, kwargs)
        try:
            if call_direct(pool, future, self._accept):
                return future
        except BaseException:
            future.cancel()
            raise
        self._accept(future)
        pool.submit(future)
        return future

    def _new_job(
        self, target: str | FunctionRecord, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[WorkerPool, JobFuture]:
        record, pool = self._pool(target)
        pool.ensure_open()  # before a job exists: a refused push leaves no job behind
        spec = record.spec
        future = JobFuture(
            f"{spec.name}-{next(self._job_ids)}",
            spec.name,
            args,
            kwargs,
            streaming=spec.is_generator,
            canceller=pool.cancel,
            on_cancelled=self.publish_job,
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

    def _accept(self, future: JobFuture) -> None:
        """Enter a new job in the history and announce it (before it can start: published
        after, "queued" could arrive after "processing" or even "finished" and leave a
        listener with a stale state; a direct call announces it before writing the call)."""
        self._remember(future)
        self.publish_job(future)

    def _preflight(self, record: FunctionRecord) -> None:
        """Checks that must pass before any worker starts: env values, backend support, GPUs."""
        self.worker_environment(record.spec)
        backend = self.backend(record.backend)
        for note in backend.check(record.spec):
            warnings.warn(
                f"{record.spec.name}: {note}", SieveWarning, stacklevel=_user_stacklevel()
            )
        spec = record.spec
        if spec.gpu is not None and not spec.gpu.is_cpu:
            # One card (or share) per worker: finding out at the second worker would fail the
            # push after its job was already queued and running on the first.
            probes: list[str] = []
            try:
                for index in range(record.workers):
                    probes.append(f"{spec.name}-preflight-{index}")
                    try:
                        assignment = self.gpus.acquire_for(spec, probes[-1])
                    except GpuUnavailableError as exc:
                        if index == 0:
                            raise
                        cards = self.gpus._get().inventory.describe()
                        raise GpuUnavailableError(
                            f"gpu: workers={record.workers} each need a {spec.gpu} card (or a "
                            f"share of one), but only {index} can be had here ({cards}). "
                            f"Fix: workers={index}, or a split such as "
                            f"sieve.gpu.{spec.gpu.kind}(split={record.workers})."
                        ) from exc
                    if assignment is None:
                        break  # running on the CPU instead (already warned)
            finally:
                for probe in probes:
                    self.gpus.release(probe)
        record.checked = True

    def _remember(self, future: JobFuture) -> None:
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
                if not oldest.done():
                    break
                jobs.popitem(last=False)

    def job(self, job_id: str) -> JobFuture:
        try:
            return self._jobs[job_id]
        except KeyError:
            raise SieveError(
                f"no job {job_id!r} in this kernel. Fix: `%sieve jobs` lists the recent ones."
            ) from None

    def jobs(self, limit: int | None = None) -> list[JobFuture]:
        """Recent jobs, newest first."""
        jobs = list(self._jobs.values())
        jobs.reverse()
        return jobs if limit is None else jobs[:limit]

    def upstream_call(
        self,
        worker: WorkerConnection,
        request_id: int,
        parent_job: str | None,
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        """A function called another one from inside its worker: run it and reply."""

        def reply(ok: bool, value: Any) -> None:
            try:
                worker.send_control(("reply", request_id, ok, value))
            except Exception as exc:  # noqa: BLE001 - e.g. a result that cannot be pickled
                worker.send_control(("reply", request_id, False, SieveError(str(exc))))

        try:
            self._refuse_self_deadlock(worker, name)
            future = self.submit(name, args, kwargs)
        except Exception as exc:  # noqa: BLE001 - reported to the calling worker
            reply(False, exc)
            return
        future.parent_job = parent_job  # type: ignore[attr-defined]

        def done(f: concurrent.futures.Future[Any]) -> None:
            if f.cancelled():
                from sieve_jupyter._errors import JobCancelledError

                reply(False, JobCancelledError(f"job {future.job_id} was cancelled"))
            elif f.exception() is not None:
                reply(False, f.exception())
            else:
                reply(True, f.result())

        future.add_done_callback(done)

    def _refuse_self_deadlock(self, worker: WorkerConnection, name: str) -> None:
        """A function calling itself from its only worker would wait forever: that worker is
        busy running the very call that waits. Say so instead of hanging."""
        record = self.record(name)
        if record.pool is worker.pool and record.workers == 1:
            raise SieveError(
                f"{record.name} calls itself through .run()/.push() from its only worker, which "
                "is busy running the calling job, so the call would wait forever. Fix: give it "
                "workers=2 or more, or call the Python function directly."
            )

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
        record = self.record(name)
        if record.pool is None:
            return
        record.pool.restart()

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
                    f"{spec.name}: environment variable {env.name}{about} is not set in the "
                    f"kernel and has no default. Fix: os.environ[{env.name!r}] = '...' in the "
                    "notebook (or export it before starting Jupyter), then run again."
                )
            values[env.name] = value
        return values

    def labels(self, spec: FunctionSpec) -> dict[str, str]:
        return {
            "sieve-jupyter.kernel": self.kernel_id,
            "sieve-jupyter.function": spec.name,
            "sieve-jupyter.spec-hash": spec.environment.content_hash(),
        }

    # -- events ------------------------------------------------------------------------------

    def publish_function(self, record: FunctionRecord) -> None:
        if self.events.wants("function"):
            self.events.emit("function", record.describe())

    def publish_job(self, future: JobFuture) -> None:
        wanted = self.events.wanted
        if wanted is None or "job" in wanted:
            self.events.emit("job", future.snapshot())

    def publish_output(self, future: JobFuture) -> None:
        if self.events.wants("output"):
            self.events.emit("output", {"job_id": future.job_id, "index": len(future.outputs) - 1})

    def publish_log(
        self, pool: WorkerPool, future: JobFuture | None, stream: str, text: str
    ) -> None:
        if self.events.wants("log"):
            self.events.emit(
                "log",
                {
                    "job_id": future.job_id if future is not None else None,
                    "function": pool.spec.name,
                    "stream": stream,
                    "text": text,
                },
            )


_manager: Manager | None = None
_manager_lock = threading.Lock()


def _attach_notebook_layer(manager: Manager) -> None:
    # The notebook layer sits above the manager, so it is reached through this hook, and only
    # in a Jupyter kernel: worker output then lands in the right cell and the side panel can
    # connect even when the user only imported the package (no %load_ext).
    if "ipykernel" in sys.modules:
        from sieve_jupyter.jupyter import attach_running_kernel

        attach_running_kernel(manager)


#: called with the manager right after it is created
manager_created_hooks: list[Callable[[Manager], None]] = [_attach_notebook_layer]


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
