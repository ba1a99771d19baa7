"""The state one `WorkerPool` keeps, and what the manager gives it (`PoolHost`).

A pool is three layers of one object, each in its own module: this state and the helpers every
part uses; its workers' lifecycle (`_pool_workers.py`: start, ready, exit, stop, restart, swap);
and dispatch (`_pool.py`: queueing, writing calls, settling outcomes). Every field here is
guarded by `lock` (docs/INTERNALS.md, "Threads and locks").
"""

from __future__ import annotations

import collections
import concurrent.futures
import itertools
import threading
import traceback
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, Union

from sieve_jupyter._errors import SieveError
from sieve_jupyter.manager._affinity import FOLLOW_MAX_SECONDS
from sieve_jupyter.runtime.messages import ErrorInfo

if TYPE_CHECKING:
    from sieve_jupyter._config import Config
    from sieve_jupyter.backends import Backend
    from sieve_jupyter.manager._events import EventBus
    from sieve_jupyter.manager._gpu import ManagerGpus
    from sieve_jupyter.manager._jobs import JobFuture
    from sieve_jupyter.manager._record import FunctionRecord
    from sieve_jupyter.manager._worker_base import Worker
    from sieve_jupyter.runtime.messages import LoadOptions
    from sieve_jupyter.spec import FunctionSpec

__all__ = ["PoolBase", "PoolHost", "SwapOutcome"]

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
    ) -> JobFuture[Any]: ...

    def hold_weakly(self, future: JobFuture[Any]) -> None: ...


class PoolBase:
    """The queue, the workers and the state of one function's pool."""

    def __init__(self, host: PoolHost, record: FunctionRecord, backend: Backend) -> None:
        self.host = host
        self.events = host.events
        self.record = record
        self.backend = backend
        #: a `.run()` may talk to an idle worker from the calling thread (`_direct.py`): only
        #: workers connected to the kernel's socket have the reply connection that needs
        self.direct_calls = not backend.links_workers
        self.size = record.workers
        self.queue: collections.deque[JobFuture[Any]] = collections.deque()
        self.workers: dict[str, Worker] = {}
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

    def _wake_sender(self) -> None:
        """Wake the sender thread if it waits (lock held). It is woken once: the pushes of a
        burst made while it wakes up (it needs the GIL, which the pushing thread holds) each
        notified it again before, about one push in ten."""
        if self._sender_waiting:
            self._sender_waiting = False
            self._wake.notify()

    # -- provided by the layers above --------------------------------------------------------

    def _send_loop(self) -> None:
        raise NotImplementedError  # WorkerPool

    def _assign(self) -> Worker | None:
        raise NotImplementedError  # WorkerPool

    def stop(self, *, cancel_pending: bool = True) -> None:
        raise NotImplementedError  # PoolWorkers

    def close(self) -> None:
        raise NotImplementedError  # PoolWorkers

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
            "busy_poll": self.busy_poll_seconds,
        }

    @property
    def busy_poll_seconds(self) -> float:
        return self.host.config.busy_poll_us / 1e6

    def follows_caller(self) -> bool:
        """Whether a direct call's worker runs on its caller's CPU (see _affinity.py): for
        functions whose calls are timed and quick."""
        average = self._average_seconds
        return average is not None and average < FOLLOW_MAX_SECONDS

    def reply_poll_seconds(self) -> float:
        """How long a direct call polls for its outcome before sleeping: the configured time,
        unless calls of this function usually take longer than that anyway."""
        budget = self.busy_poll_seconds
        average = self._average_seconds
        return budget if average is None or average < budget else 0.0

    # -- events ------------------------------------------------------------------------------

    def publish_job(self, future: JobFuture[Any]) -> None:
        wanted = self.events.wanted
        if wanted is None or "job" in wanted:
            self.events.emit("job", future.snapshot())

    def publish_function(self) -> None:
        self.record.publish(self.events)

    # -- shared helpers ----------------------------------------------------------------------

    def ensure_open(self) -> None:
        """Raise if this pool takes no new jobs (its registration was replaced or removed)."""
        if self._closed:
            raise SieveError(
                f"{self.spec.name}: this registration was replaced or removed. Fix: use the "
                "handle from the latest run of its cell, or sieve.function.get(name)."
            )

    def log(self, future: JobFuture[Any] | None, stream: str, text: str) -> None:
        if future is not None:
            future._add_log(stream, text)
        if self.events.wants("log"):
            self.events.emit(
                "log",
                {
                    "job_id": future.job_id if future is not None else None,
                    "function": self.spec.name,
                    "stream": stream,
                    "text": text,
                },
            )

    def _waiting_job(self) -> JobFuture[Any] | None:
        with self.lock:
            return self.queue[0] if self.queue else None

    def _finish(
        self,
        future: JobFuture[Any],
        value: Any = None,
        exception: BaseException | None = None,
        *,
        shared: bool = False,
        publish: bool = True,
    ) -> None:
        """Settle `future`. `shared`: its value was rebuilt on a worker's shared memory (or
        holds memory of Ray's object store), so the history holds the job weakly
        (`PoolHost.hold_weakly`) from before whoever waits for it wakes: a caller that drops
        the value next finds the memory going back at once. `publish=False`: the caller knows
        nobody listens for jobs (it asked once for a whole burst)."""
        before_wake = self.host.hold_weakly if shared else None
        if future._resolve(value, exception, before_wake=before_wake) and publish:
            self.publish_job(future)

    def _busy(self) -> bool:
        return any(len(w.jobs) for w in self.workers.values())

    def note_protocol_error(self, exc: BaseException) -> None:
        self.last_error = "".join(traceback.format_exception(exc))

    def expect_exit(self, worker: Worker) -> None:
        """The worker said it is about to exit (restarting after an error): no job is blamed
        for it, and it takes no new calls meanwhile."""
        with self.lock:
            worker.retire()

    def describe(self) -> list[dict[str, Any]]:
        with self.lock:
            return [w.describe() for w in self.workers.values()]

    def live_workers(self) -> list[Worker]:
        with self.lock:
            return [w for w in self.workers.values() if w.ready]
