"""One comm between the kernel's manager and a "Sieve" panel: snapshot, throttled deltas, actions.

The manager's event callbacks only note what changed (they run on manager threads and must
return at once); a flusher thread sends the latest state of everything that changed at most
once per `FLUSH_INTERVAL`, so a thousand job updates a second still reach the panel as a few
messages a second. Messages follow ``_channel_protocol``.
"""

from __future__ import annotations

import contextvars
import importlib.util
import logging
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sieve_jupyter.jupyter._channel_counts import JobCounter
from sieve_jupyter.jupyter._channel_deployments import DeploymentsWatcher, deployments_available
from sieve_jupyter.jupyter._channel_protocol import (
    ACTIONS,
    DEFAULT_JOB_LIMIT,
    DEPLOYMENTS_INTERVAL,
    FLUSH_INTERVAL,
    MAX_JOB_LIMIT,
    PROTOCOL_VERSION,
    DeltaMessage,
    DeploymentsMessage,
    Features,
    FunctionRow,
    JobRow,
    ResultMessage,
    SnapshotMessage,
)
from sieve_jupyter.jupyter._channel_rows import function_row, job_row
from sieve_jupyter.jupyter._tracebacks import error_text

__all__ = ["CommLike", "ManagerLike", "PanelChannel"]

_log = logging.getLogger(__name__)


class CommLike(Protocol):
    """The part of an ipykernel comm the channel uses (tests pass a recording one)."""

    def send(self, data: Any = None) -> None: ...
    def close(self) -> None: ...
    def on_msg(self, callback: Callable[[dict[str, Any]], None]) -> None: ...
    def on_close(self, callback: Callable[[dict[str, Any]], None]) -> None: ...


class _Events(Protocol):
    def subscribe(self, callback: Callable[[Any], None]) -> Callable[[], None]: ...


class ManagerLike(Protocol):
    """The manager API the channel consumes (see docs/INTERNALS.md, "manager")."""

    @property
    def events(self) -> _Events: ...
    def functions(self) -> list[dict[str, Any]]: ...
    def jobs(self, limit: int | None = None) -> Sequence[Any]: ...
    def job(self, job_id: str) -> Any: ...
    def restart(self, name: str) -> None: ...
    def stop(self, name: str) -> None: ...


def form_available() -> bool:
    """True when the panel's "Form" button would work: it runs ``%sieve form NAME`` in the
    notebook, which needs the ``%sieve`` magic and the widgets module that renders forms."""
    try:
        if importlib.util.find_spec("sieve_jupyter.jupyter.widgets") is None:
            return False
    except (ImportError, ValueError):
        return False
    ipython_module = sys.modules.get("IPython")
    ipython = ipython_module.get_ipython() if ipython_module is not None else None
    return ipython is not None and ipython.find_line_magic("sieve") is not None


@dataclass(frozen=True)
class _Refresh:
    """A state the channel read itself, handled like a manager event of the same kind."""

    kind: str
    data: dict[str, Any]


class PanelChannel:
    """Serve one panel over one comm.

    Args:
        comm: the open comm (either side may have opened it).
        manager: returns the process's manager; called on the first ``subscribe``, so a panel
            that connects before any function is defined still gets an (empty) snapshot.
        interval: seconds between deltas at most; None sends nothing on its own (tests call
            `flush`).
        threaded_actions: run actions on a worker thread, so a restart that waits for
            ``__setup__`` does not block the kernel; tests run them inline.
        on_closed: called once when the channel closes (the registry forgets it).
        deployments_interval: seconds between two listings of the deployments while the
            panel watches them.
    """

    def __init__(
        self,
        comm: CommLike,
        manager: Callable[[], ManagerLike],
        *,
        interval: float | None = FLUSH_INTERVAL,
        threaded_actions: bool = True,
        clock: Callable[[], float] = time.time,
        on_closed: Callable[[PanelChannel], None] | None = None,
        deployments_interval: float = DEPLOYMENTS_INTERVAL,
    ) -> None:
        self._comm = comm
        self._manager_factory = manager
        self._manager: ManagerLike | None = None
        self._interval = interval
        self._threaded_actions = threaded_actions
        self._clock = clock
        self._on_closed = on_closed
        self._lock = threading.Lock()
        self._seq = 0
        self._job_limit = DEFAULT_JOB_LIMIT
        self._subscribed = False
        self._closed = False
        self._unsubscribe: Callable[[], None] | None = None
        # name -> latest row, or None once removed; job_id -> latest row
        self._pending_functions: dict[str, FunctionRow | None] = {}
        self._pending_jobs: dict[str, JobRow] = {}
        self._counts = JobCounter()
        self._generation = 0  # counts snapshots: a delta read before one is dropped
        self._listed_running: set[str] = set()  # jobs the panel shows as running
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._flusher: threading.Thread | None = None
        self._send_context: contextvars.Context | None = None
        self.deployments = DeploymentsWatcher(
            self._send_deployments, interval=deployments_interval, clock=clock
        )

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, open_data: Any = None) -> None:
        """Listen on the comm; `open_data` is the comm's open payload (a subscribe, or nothing)."""
        self._comm.on_msg(self._on_comm_msg)
        self._comm.on_close(lambda _msg: self.close(from_peer=True))
        if isinstance(open_data, dict) and open_data:
            self.handle(open_data)

    def close(self, *, from_peer: bool = False) -> None:
        """Stop listening to the manager and close the comm (unless the panel closed it)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            unsubscribe, self._unsubscribe = self._unsubscribe, None
        if unsubscribe is not None:
            unsubscribe()
        self._stopped.set()
        self._wake.set()
        self.deployments.close()
        if not from_peer:
            try:
                self._comm.close()
            except Exception:  # noqa: BLE001 - the kernel may be shutting down
                _log.debug("closing the panel comm failed", exc_info=True)
        if self._on_closed is not None:
            self._on_closed(self)

    @property
    def closed(self) -> bool:
        """True once the channel (or its comm) is closed."""
        return self._closed

    # -- panel -> kernel ---------------------------------------------------------------------

    def _on_comm_msg(self, msg: dict[str, Any]) -> None:
        self.handle(msg.get("content", {}).get("data"))

    def handle(self, data: Any) -> None:
        """Act on one message from the panel (unknown or other-version messages are ignored)."""
        # ipykernel routes the panel's next comm messages to the subshell of whatever request
        # our last send belonged to. Sending in the context of the panel's own message keeps
        # them on the panel's subshell, so actions work while a cell keeps the kernel busy.
        context = contextvars.copy_context()
        with self._lock:
            self._send_context = context
        if not isinstance(data, dict) or data.get("v") != PROTOCOL_VERSION:
            _log.warning("sieve panel: ignoring a message of another protocol version: %r", data)
            return
        kind = data.get("type")
        if kind == "subscribe":
            limit = data.get("job_limit", DEFAULT_JOB_LIMIT)
            if isinstance(limit, int) and not isinstance(limit, bool):
                self._job_limit = max(1, min(limit, MAX_JOB_LIMIT))
            self._subscribe()
            self.deployments.watch(data.get("watch_deployments") is True)
        elif kind == "watch":
            self.deployments.watch(data.get("deployments") is True)
        elif kind == "action":
            self._action(data)
        else:
            _log.warning("sieve panel: ignoring an unknown message type %r", kind)

    def _subscribe(self) -> None:
        manager = self._manager
        if manager is None:
            manager = self._manager = self._manager_factory()
        with self._lock:
            if self._closed:
                return
            self._subscribed = True
            # Events from now on are kept for the next delta; the snapshot below may already
            # include them, and sending a row twice is harmless (deltas are upserts).
            self._pending_functions.clear()
            self._pending_jobs.clear()
            if self._unsubscribe is None:
                self._unsubscribe = manager.events.subscribe(self._on_event)
        # Read the manager without holding our lock: its threads call `_on_event`, which takes
        # our lock, while possibly holding theirs.
        functions = [function_row(f) for f in manager.functions()]
        history = [j.snapshot() for j in manager.jobs()]
        # The newest jobs, and every running one however old (the panel lists them all).
        listed = history[: self._job_limit] + [
            s for s in history[self._job_limit :] if s.get("status") == "processing"
        ]
        jobs = [self._with_error_text(job_row(s)) for s in listed]
        features: Features = {"form": form_available(), "deployments": deployments_available()}
        with self._lock:
            if self._closed:
                return
            self._listed_running.clear()
            self._note_running(jobs)
            # Events that arrived meanwhile are pending and recounted: counting is idempotent.
            self._counts.reset(history)
            for row in self._pending_jobs.values():
                self._counts.record(row["job_id"], row["function"], row["status"])
            self._counts.take_changed()
            self._generation += 1
            self._seq += 1
            snapshot: SnapshotMessage = {
                "v": PROTOCOL_VERSION,
                "type": "snapshot",
                "seq": self._seq,
                "server_time": self._clock(),
                "functions": functions,
                "jobs": jobs,
                "counts": self._counts.all(),
                "job_limit": self._job_limit,
                "features": features,
            }
            self._send(snapshot)
        self._ensure_flusher()

    def _action(self, data: dict[str, Any]) -> None:
        request_id = str(data.get("request_id", ""))
        action, target = data.get("action"), data.get("target")
        if action not in ACTIONS or not isinstance(target, str):
            self._result(request_id, f"unknown action {action!r} on {target!r}")
            return
        if self._threaded_actions:
            name = f"sieve-panel-{action}"
            threading.Thread(
                target=self._run_action, args=(request_id, action, target), name=name, daemon=True
            ).start()
        else:
            self._run_action(request_id, action, target)

    def _run_action(self, request_id: str, action: str, target: str) -> None:
        manager = self._manager or self._manager_factory()
        try:
            if action == "undeploy":
                self.deployments.undeploy(target)
            elif action == "cancel_job":
                job = manager.job(target)
                job.cancel()
                # Show the outcome even if the manager publishes no event for it.
                self._on_event(_Refresh("job", job.snapshot()))
            else:
                if action == "restart":
                    manager.restart(target)
                else:
                    manager.stop(target)
                for row in manager.functions():
                    if row.get("name") == target:
                        self._on_event(_Refresh("function", row))
        except Exception as exc:  # noqa: BLE001 - any failure is reported to the panel
            self._result(request_id, f"{action} {target}: {type(exc).__name__}: {exc}")
        else:
            self._result(request_id, None)

    def _result(self, request_id: str, error: str | None) -> None:
        message: ResultMessage = {
            "v": PROTOCOL_VERSION,
            "type": "result",
            "request_id": request_id,
            "ok": error is None,
            "error": error,
        }
        with self._lock:
            if not self._closed:
                self._send(message)

    def _send_deployments(self, message: DeploymentsMessage) -> None:
        with self._lock:
            if not self._closed:
                self._send(message)

    # -- manager -> panel --------------------------------------------------------------------

    def _on_event(self, event: Any) -> None:
        kind, data = event.kind, event.data
        try:
            with self._lock:
                if kind == "function":
                    row = function_row(data)
                    self._pending_functions[row["name"]] = row
                elif kind == "function_removed":
                    self._pending_functions[str(data["name"])] = None
                    self._counts.forget(str(data["name"]))
                elif kind == "job":
                    job = job_row(data)
                    self._pending_jobs[job["job_id"]] = job
                    self._counts.record(job["job_id"], job["function"], job["status"])
                else:
                    return  # logs and outputs show under their cell, not in the panel
        except (KeyError, TypeError):
            _log.warning("sieve panel: malformed %s event %r", kind, data)
            return
        self._wake.set()

    def flush(self) -> bool:
        """Send one delta with the latest state of everything that changed; False if nothing did."""
        with self._lock:
            if self._closed or not self._subscribed:
                return False
            if not self._pending_functions and not self._pending_jobs:
                return False
            generation = self._generation
            functions = [row for row in self._pending_functions.values() if row is not None]
            removed = [name for name, row in self._pending_functions.items() if row is None]
            # Only the newest jobs fit in the panel's bounded list (older ones would fall off),
            # except running ones, which it always lists.
            newest = sorted(
                self._pending_jobs.values(),
                key=lambda j: (j["submitted_at"] or 0.0, j["job_id"]),
                reverse=True,
            )
            # ... and jobs the panel lists as running, which must hear that they stopped.
            jobs = newest[: self._job_limit] + [
                j
                for j in newest[self._job_limit :]
                if j["status"] == "processing" or j["job_id"] in self._listed_running
            ]
            self._note_running(jobs)
            self._pending_functions.clear()
            self._pending_jobs.clear()
        # Outside our lock: reading a job's exception takes the future's, which the manager's
        # threads may hold while they publish events (which take ours).
        jobs = [self._with_error_text(j) for j in jobs]
        with self._lock:
            if self._closed or generation != self._generation:
                return False  # a snapshot went out meanwhile, newer than these rows
            self._seq += 1
            delta: DeltaMessage = {
                "v": PROTOCOL_VERSION,
                "type": "delta",
                "seq": self._seq,
                "server_time": self._clock(),
                "functions": functions,
                "removed_functions": removed,
                "jobs": jobs,
                "counts": self._counts.take_changed(),
            }
            self._send(delta)
            return True

    def _note_running(self, jobs: list[JobRow]) -> None:
        """Remember which jobs the panel now lists as running (lock held)."""
        for job in jobs:
            if job["status"] == "processing":
                self._listed_running.add(job["job_id"])
            else:
                self._listed_running.discard(job["job_id"])

    def _with_error_text(self, row: JobRow) -> JobRow:
        """A failed job's error as the panel's tooltip shows it: the worker's frames named as
        IPython names them, then ``Type: message``."""
        if row["status"] != "error" or self._manager is None:
            return row
        try:
            exc = self._manager.job(row["job_id"]).exception(timeout=0)
        except Exception:  # noqa: BLE001 - pruned from the history: keep the short error
            return row
        if exc is not None:
            row["error"] = error_text(exc)
        return row

    def _ensure_flusher(self) -> None:
        if self._interval is None or self._flusher is not None:
            return
        self._flusher = threading.Thread(target=self._flush_loop, name="sieve-panel", daemon=True)
        self._flusher.start()

    def _flush_loop(self) -> None:
        interval = self._interval or 0.0
        while not self._stopped.is_set():
            self._wake.wait()
            self._wake.clear()
            if self._stopped.is_set():
                return
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - keep serving; the next subscribe resyncs
                _log.exception("sieve panel: sending an update failed")
            # The throttle: whatever changes meanwhile waits for the next round.
            if self._stopped.wait(interval):
                return

    def _send(self, message: Any) -> None:
        # Callers hold the lock, so sequence numbers leave in order (and no two threads enter
        # the shared context at once).
        if self._send_context is None:
            self._comm.send(dict(message))
        else:
            self._send_context.run(self._comm.send, dict(message))
