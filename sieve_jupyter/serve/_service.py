"""The server's side of the manager: which functions it serves, their health, and submitting
predictions with a bounded queue.

A `Service` is one more client of the manager, through its public surface: it registers a
bundle's functions (or serves ones a kernel registered), warms them (`Manager.warm`, so
`__setup__` runs before the first call), follows their state through `function` events, and
submits jobs with `Manager.submit`. Health is Cog's: STARTING while setup runs, READY, BUSY when
every worker has a job, SETUP_FAILED when `__setup__` (or what must precede it) failed, DEFUNCT
when a function that was ready can no longer run.
"""

from __future__ import annotations

import pickle
import platform
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sieve_jupyter._version import __version__
from sieve_jupyter.manager import Event, JobFuture, Manager, get_manager
from sieve_jupyter.serve._io import InputPlan
from sieve_jupyter.serve._predictions import PredictionStore, iso

if TYPE_CHECKING:
    from sieve_jupyter.bundle import Bundle
    from sieve_jupyter.serve._settings import ServeSettings
    from sieve_jupyter.spec import FunctionSpec

__all__ = ["DIRECT_WAIT", "Served", "Service"]

#: seconds the event loop's thread may wait for a quick prediction's answer (`Service.run`)
DIRECT_WAIT = 0.001


@dataclass(eq=False)
class Served:
    """One function the server answers for."""

    name: str
    spec: FunctionSpec
    plan: InputPlan
    workers: int
    queue_size: int
    health: str = "STARTING"
    setup_started: float | None = None
    setup_completed: float | None = None
    setup_status: str = "starting"
    setup_logs: list[str] = field(default_factory=list)
    ready_workers: int = 0
    was_ready: bool = False
    inflight: int = 0
    #: moving average of a prediction's duration (sizes Retry-After)
    average_seconds: float = 1.0

    @property
    def capacity(self) -> int:
        return self.workers + self.queue_size

    def setup(self) -> dict[str, Any]:
        return {
            "started_at": iso(self.setup_started),
            "completed_at": iso(self.setup_completed),
            "status": self.setup_status,
            "logs": "".join(self.setup_logs),
        }

    def status(self) -> str:
        if self.health == "READY" and self.inflight >= max(1, self.ready_workers):
            return "BUSY"
        return self.health


class Service:
    """The functions a server answers for, on a manager."""

    def __init__(self, settings: ServeSettings, manager: Manager | None = None) -> None:
        self.settings = settings
        self.manager = manager or get_manager()
        self.functions: dict[str, Served] = {}
        self.default = ""
        self.predictions = PredictionStore(settings.keep_seconds)
        self.started_at = time.time()
        self._registered: list[str] = []
        self._lock = threading.Lock()
        self._unsubscribe: Callable[[], None] | None = None
        #: job id -> callback(event kind, data), for streams and webhooks
        self._watchers: dict[str, Callable[[str, dict[str, Any]], None]] = {}
        self._watch_unsubscribe: Callable[[], None] | None = None
        #: shutting down: new predictions are refused (503), those in flight finish
        self.draining = False
        #: who this server is, when it runs a deployment (``{"name", "version"}``)
        self.deployment: dict[str, str] | None = None

    # -- what is served ----------------------------------------------------------------------

    def add_bundle(self, bundle: Bundle) -> None:
        """Register a bundle's functions with the manager (their workers import its code)."""
        from sieve_jupyter.serve._adapter import BundleEntry

        backend = self.settings.backend
        # (on Ray, src/ is each actor's working directory on its node: see _server._ship_to_ray)
        src = "" if backend == "ray" else str(bundle.src)
        for function in bundle.functions:
            entry = BundleEntry(src, bundle.module, function.entry, function.spec.kind)
            self.manager.register(
                function.spec,
                entry,
                pickle.dumps(entry),
                backend=backend,
                workers=self.settings.workers,
            )
            self._registered.append(function.name)
            self._add(function.spec, self.settings.workers)
        self.default = self.settings.default or bundle.default
        self._check_default()

    def add_registered(self, names: Sequence[str], *, owned: bool = False) -> None:
        """Serve functions already registered with the manager (a kernel's, or the models of
        a model.yaml); `owned`: this server unregisters them when it stops."""
        for name in names:
            record = self.manager.record(name)
            self._add(record.spec, record.workers)
            if owned:
                self._registered.append(name)
        self.default = self.settings.default or names[0]
        self._check_default()

    def _add(self, spec: FunctionSpec, workers: int) -> None:
        self.functions[spec.name] = Served(
            spec.name, spec, InputPlan.for_spec(spec), workers, self.settings.queue_size
        )

    def _check_default(self) -> None:
        from sieve_jupyter._errors import ConfigurationError

        if self.default not in self.functions:
            raise ConfigurationError(
                f"default: {self.default!r} is not served (functions: "
                f"{', '.join(self.functions)}). Fix: --default NAME with one of them."
            )

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start every function's workers; health follows their setup."""
        self._unsubscribe = self.manager.events.subscribe(self._on_event, {"function", "log"})
        for served in self.functions.values():
            served.setup_started = time.time()
            try:
                self.manager.warm(served.name)
            except Exception as exc:  # noqa: BLE001 - a missing Env, a GPU: setup cannot run
                self._failed(served, f"{type(exc).__name__}: {exc}\n")
            else:
                self._refresh(served, self.manager.record(served.name).describe())

    def stop(self) -> None:
        """Stop the workers this server started (a kernel's functions keep theirs)."""
        for unsubscribe in (self._unsubscribe, self._watch_unsubscribe):
            if unsubscribe is not None:
                unsubscribe()
        self._unsubscribe = self._watch_unsubscribe = None
        for name in self._registered:
            try:
                self.manager.unregister(name)
            except Exception:  # noqa: BLE001, S110 - best effort on the way out
                pass
        self._registered.clear()

    def _failed(self, served: Served, text: str) -> None:
        served.health = "DEFUNCT" if served.was_ready else "SETUP_FAILED"
        served.setup_status = "failed" if not served.was_ready else served.setup_status
        if served.setup_completed is None:
            served.setup_completed = time.time()
        # (the same failure is told by the worker's state event and by what `start` reads
        # back when warming returns: logged once)
        if not served.setup_logs or served.setup_logs[-1] != text:
            served.setup_logs.append(text)

    def _on_event(self, event: Event) -> None:
        data = event.data
        if event.kind == "log":
            served = self.functions.get(data.get("function", ""))
            if served is not None and data.get("job_id") is None and not served.was_ready:
                served.setup_logs.append(data["text"])
            return
        served = self.functions.get(data.get("name", ""))
        if served is not None:
            self._refresh(served, data)

    def _refresh(self, served: Served, info: dict[str, Any]) -> None:
        state = info["state"]
        ready = sum(1 for w in info["workers"] if w.get("state") == "ready")
        served.ready_workers = ready
        if ready:
            if not served.was_ready:
                served.was_ready = True
                served.setup_completed = time.time()
                served.setup_status = "succeeded"
            served.health = "READY"
        elif state == "error":
            self._failed(served, (info.get("error") or "setup failed") + "\n")
        elif state == "stopped" and served.was_ready:
            served.health = "DEFUNCT"
        elif served.health not in ("SETUP_FAILED", "DEFUNCT"):
            served.health = "STARTING"

    # -- health ------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """Cog's health-check document, with each function's own state besides."""
        served = list(self.functions.values())
        statuses = [s.status() for s in served]
        status: str
        for worst in ("SETUP_FAILED", "DEFUNCT", "STARTING"):
            if worst in statuses:
                status = worst
                break
        else:
            status = "BUSY" if all(s == "BUSY" for s in statuses) else "READY"
        started = [s.setup_started for s in served if s.setup_started is not None]
        completed = [s.setup_completed for s in served]
        setup_status = (
            "failed"
            if any(s.setup_status == "failed" for s in served)
            else "succeeded"
            if all(s.setup_status == "succeeded" for s in served)
            else "starting"
        )
        document: dict[str, Any] = {
            "status": status,
            "setup": {
                "started_at": iso(min(started)) if started else None,
                "completed_at": iso(max(c for c in completed if c is not None))
                if all(c is not None for c in completed)
                else None,
                "status": setup_status,
                "logs": "".join("".join(s.setup_logs) for s in served),
            },
            "version": {"sieve_jupyter": __version__, "python": platform.python_version()},
            "functions": {
                s.name: {
                    "status": s.status(),
                    "workers": s.workers,
                    "ready_workers": s.ready_workers,
                    "predictions": s.inflight,
                    "setup": s.setup(),
                }
                for s in served
            },
        }
        if self.draining:
            document["draining"] = True
        if self.deployment is not None:
            document["deployment"] = self.deployment
        return document

    # -- predictions -------------------------------------------------------------------------

    def admit(self, served: Served) -> str | None:
        """Why a new prediction cannot be taken now ("not_ready", "draining", "full"), or None;
        on None the prediction counts against the function's queue until `release`."""
        if served.health != "READY":
            return "not_ready"
        with self._lock:
            if self.draining:
                return "draining"
            if served.inflight >= served.capacity:
                return "full"
            served.inflight += 1
        return None

    def drain(self) -> None:
        """Refuse new predictions from now on (503, saying so); those admitted finish."""
        with self._lock:
            self.draining = True

    def inflight(self) -> int:
        """Predictions admitted and not yet finished, over every function."""
        with self._lock:
            return sum(s.inflight for s in self.functions.values())

    def release(self, served: Served, future: JobFuture[Any] | None) -> None:
        with self._lock:
            served.inflight -= 1
        if future is not None and future.duration is not None:
            served.average_seconds = 0.8 * served.average_seconds + 0.2 * future.duration

    def retry_after(self, served: Served) -> int:
        """Seconds until a place in the queue is likely free (for 429's Retry-After)."""
        per_worker = served.capacity / max(1, served.workers)
        return max(1, round(served.average_seconds * per_worker / 2))

    def submit(
        self, served: Served, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> JobFuture[Any]:
        return self.manager.submit(served.name, args, kwargs)

    def run(self, served: Served, args: tuple[Any, ...], kwargs: dict[str, Any]) -> JobFuture[Any]:
        """Like `submit`, for a caller on the event loop that waits for the answer: when a
        worker is idle, this thread writes the call and waits up to `DIRECT_WAIT` seconds for
        its answer (handing it to the loop costs a thread switch and a wake-up of the loop,
        more than a quick call itself); a call still running then finishes in the
        background, and a function whose calls usually take longer is queued as by
        `submit`."""
        return self.manager.run(served.name, args, kwargs, wait=DIRECT_WAIT)

    # -- watching jobs (streams, webhooks) ---------------------------------------------------

    def watch(self, job_id: str, callback: Callable[[str, dict[str, Any]], None]) -> None:
        """Call `callback(kind, data)` on the manager's threads for the job's status changes,
        printed text and outputs, until `unwatch` (only while someone watches is the manager
        asked for these events, so plain predictions pay nothing for them)."""
        with self._lock:
            self._watchers[job_id] = callback
            if self._watch_unsubscribe is None:
                self._watch_unsubscribe = self.manager.events.subscribe(
                    self._on_job_event, {"job", "log", "output"}
                )

    def unwatch(self, job_id: str) -> None:
        with self._lock:
            self._watchers.pop(job_id, None)
            if not self._watchers and self._watch_unsubscribe is not None:
                self._watch_unsubscribe()
                self._watch_unsubscribe = None

    def _on_job_event(self, event: Event) -> None:
        job_id = event.data.get("job_id")
        callback = self._watchers.get(job_id) if job_id is not None else None
        if callback is not None:
            callback(event.kind, event.data)
