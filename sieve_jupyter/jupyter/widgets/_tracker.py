"""Progress bookkeeping for many futures, and the one throttled thread that redraws widgets.

`ProgressState` keeps per-function counts of queued/processing/finished/error/cancelled jobs.
Every status change (a manager event, a done callback, a bounded poll) costs O(1), so 10,000
futures never make the kernel do 10,000 units of work per update. Widgets never redraw on an
event: the `Ticker` thread calls `tick()` on each live widget a few times per second, and a
widget sends only what changed since its last tick.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["FunctionCounts", "ProgressState", "Ticker", "future_status", "get_ticker"]

log = logging.getLogger(__name__)

STATUSES = ("queued", "processing", "finished", "error", "cancelled")
_RANK = {"queued": 0, "processing": 1, "finished": 2, "error": 2, "cancelled": 2}
TERMINAL = frozenset({"finished", "error", "cancelled"})
_POLL_BUDGET = 64  # futures re-read per tick: catches a missed event without O(n) work


def future_status(future: Future[Any]) -> str:
    """The status name of a `JobFuture` (its `status.value`) or of any other future."""
    status = getattr(future, "status", None)
    value = getattr(status, "value", status)
    if isinstance(value, str) and value in _RANK:
        return value
    if future.cancelled():
        return "cancelled"
    if future.done():
        return "error" if future.exception() is not None else "finished"
    return "processing" if future.running() else "queued"


def future_key(future: Future[Any]) -> Any:
    """The identity used to match manager events to futures: the job id when there is one."""
    job_id = getattr(future, "job_id", None)
    return job_id if job_id is not None else id(future)


@dataclass
class FunctionCounts:
    """How the jobs of one function stand."""

    name: str
    total: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    first_submitted: float | None = None
    last_finished: float | None = None

    @property
    def done(self) -> int:
        """Jobs in a terminal state (finished, error or cancelled)."""
        return self.counts["finished"] + self.counts["error"] + self.counts["cancelled"]

    def timing(self, now: float) -> tuple[float, float | None, float | None]:
        """``(elapsed seconds, jobs per second, seconds left)``; rate/ETA are None until known."""
        start = self.first_submitted if self.first_submitted is not None else now
        end = self.last_finished if self.done == self.total and self.last_finished else now
        elapsed = max(0.0, end - start)
        if self.done == 0 or elapsed <= 0:
            return elapsed, None, None
        rate = self.done / elapsed
        return elapsed, rate, (self.total - self.done) / rate


class EventSource(Protocol):
    """What `ProgressState` needs of the manager's event bus."""

    def subscribe(self, callback: Callable[[Any], None]) -> Callable[[], None]: ...


class ProgressState:
    """Thread-safe per-function counts for a fixed set of futures.

    Args:
        futures: the futures to follow (any `concurrent.futures.Future`; `JobFuture[Any]`s add
            job ids, function names, logs and timing).
        events: an event bus with ``subscribe(callback) -> unsubscribe`` delivering
            ``Event(kind="job", data=snapshot)``; the manager's by default when available.
    """

    def __init__(self, futures: Iterable[Future[Any]], events: EventSource | None = None) -> None:
        self._lock = threading.Lock()
        self.futures: list[Future[Any]] = list(futures)
        self.created = time.time()
        self.version = 0  # bumped on every change, so a tick can skip work when nothing moved
        self.functions: dict[str, FunctionCounts] = {}
        self.errors: list[Future[Any]] = []  # in the order they failed
        self.processing: dict[Any, Future[Any]] = {}  # insertion-ordered: oldest first
        #: the jobs that printed something, in the order they first did
        self.printed_futures: list[Future[Any]] = []
        self._printed: set[Any] = set()
        self._status: dict[Any, str] = {}
        self._function_of: dict[Any, str] = {}
        self._by_key: dict[Any, Future[Any]] = {}
        self._poll_cursor = 0
        self._unsubscribe: Callable[[], None] | None = None
        if events is None:
            events = _manager_events(self.futures)
        if events is not None:
            # subscribe before reading statuses: a change in between is then seen, not lost
            self._unsubscribe = events.subscribe(self.on_event)
        with self._lock:
            for future in self.futures:
                self._add(future)
        for future in self.futures:
            future.add_done_callback(self.on_done)

    def _add(self, future: Future[Any]) -> None:
        key = future_key(future)
        if key in self._status:
            return  # the same future given twice counts once
        name = str(getattr(future, "function", None) or "jobs")
        counts = self.functions.get(name)
        if counts is None:
            counts = self.functions[name] = FunctionCounts(name)
        status = future_status(future)
        counts.total += 1
        counts.counts[status] += 1
        submitted = getattr(future, "submitted_at", None)
        start = submitted if isinstance(submitted, (int, float)) else self.created
        if counts.first_submitted is None or start < counts.first_submitted:
            counts.first_submitted = start
        if status in TERMINAL:
            finished = getattr(future, "finished_at", None)
            if isinstance(finished, (int, float)):
                counts.last_finished = max(counts.last_finished or 0.0, finished)
        self._status[key] = status
        self._function_of[key] = name
        self._by_key[key] = future
        if status == "processing":
            self.processing[key] = future
        elif status == "error":
            self.errors.append(future)
        try:
            printed = bool(getattr(future, "logs", None))
        except Exception:  # noqa: BLE001 - a future that cannot say: it has not printed
            printed = False
        if printed:
            self._printed.add(key)
            self.printed_futures.append(future)

    def _apply(self, key: Any, status: str, finished_at: float | None = None) -> bool:
        """Move one job to `status` if that is a step forward; O(1). Caller holds the lock."""
        old = self._status.get(key)
        if old is None or status not in _RANK or _RANK[status] <= _RANK[old]:
            return False
        counts = self.functions[self._function_of[key]]
        counts.counts[old] -= 1
        counts.counts[status] += 1
        self._status[key] = status
        if old == "processing":
            self.processing.pop(key, None)
        if status == "processing":
            self.processing[key] = self._by_key[key]
        if status in TERMINAL:
            end = finished_at if finished_at else time.time()
            counts.last_finished = max(counts.last_finished or 0.0, end)
            if status == "error":
                self.errors.append(self._by_key[key])
        self.version += 1
        return True

    @property
    def printed(self) -> int:
        """How many of the jobs printed something."""
        return len(self.printed_futures)

    def on_event(self, event: Any) -> None:
        """Manager event callback: a ``job`` event moves that job's counts, a ``log`` event
        notes that the job printed (others are ignored)."""
        kind = getattr(event, "kind", None)
        data = getattr(event, "data", None)
        if kind == "log" and isinstance(data, dict):
            self._note_printed(data.get("job_id"))
            return
        if kind != "job" or not isinstance(data, dict):
            return
        key = data.get("job_id")
        status = data.get("status")
        with self._lock:
            if key in self._status and isinstance(status, str) and status not in TERMINAL:
                # terminal moves come from the done callback, which can read the exception
                self._apply(key, status)

    def _note_printed(self, key: Any) -> None:
        if key is None or key in self._printed:
            return
        with self._lock:
            future = self._by_key.get(key)
            if future is not None and key not in self._printed:
                self._printed.add(key)
                self.printed_futures.append(future)
                self.version += 1

    def on_done(self, future: Future[Any]) -> None:
        """Done callback: record the final state of one future."""
        status = future_status(future)
        if status not in TERMINAL:  # the future is done, whatever its status attribute lags at
            status = future_status_from_outcome(future)
        finished = getattr(future, "finished_at", None)
        with self._lock:
            self._apply(
                future_key(future), status, finished if isinstance(finished, (int, float)) else None
            )

    def poll(self, budget: int = _POLL_BUDGET) -> None:
        """Re-read the status of up to `budget` futures (round robin) to catch missed events."""
        count = len(self.futures)
        if count == 0 or self.all_done:
            return
        with self._lock:
            for _ in range(min(budget, count)):
                future = self.futures[self._poll_cursor % count]
                self._poll_cursor += 1
                key = future_key(future)
                if self._status.get(key) in TERMINAL or future.done():
                    continue  # terminal states are recorded by on_done with their outcome
                self._apply(key, future_status(future))

    @property
    def all_done(self) -> bool:
        """Every future reached a terminal state."""
        return all(c.done == c.total for c in self.functions.values())

    def totals(self) -> dict[str, int]:
        """Counts summed over all functions (plus ``total``)."""
        with self._lock:
            result = dict.fromkeys(STATUSES, 0)
            for counts in self.functions.values():
                for name, n in counts.counts.items():
                    result[name] += n
            result["total"] = sum(c.total for c in self.functions.values())
            return result

    def status_of(self, future: Future[Any]) -> str:
        """The status this tracker last recorded for `future`."""
        return self._status.get(future_key(future), future_status(future))

    def close(self) -> None:
        """Stop listening to manager events."""
        if self._unsubscribe is not None:
            unsubscribe, self._unsubscribe = self._unsubscribe, None
            unsubscribe()


def future_status_from_outcome(future: Future[Any]) -> str:
    """The terminal status of a done future, from its outcome alone."""
    if future.cancelled():
        return "cancelled"
    return "error" if future.exception() is not None else "finished"


def _manager_events(futures: list[Future[Any]]) -> EventSource | None:
    """The manager's event bus, when these are manager futures and the manager is importable."""
    if not any(getattr(f, "job_id", None) is not None for f in futures[:1]):
        return None
    try:
        from sieve_jupyter.manager import get_manager
    except ImportError:
        return None
    try:
        events: EventSource = get_manager().events
    except Exception:  # pragma: no cover - progress must still work from done callbacks alone
        log.debug("no manager event bus; following done callbacks and polling", exc_info=True)
        return None
    return events


class _Client(Protocol):
    def tick(self) -> bool: ...


class Ticker:
    """One daemon thread calling ``tick()`` on registered widgets every `interval` seconds.

    A client's ``tick()`` returns False when it has drawn its final state; it is then dropped.
    The thread exits when no client is left and starts again on the next `add`.
    """

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self._clients: list[_Client] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()

    def add(self, client: _Client) -> None:
        """Start calling ``client.tick()``."""
        with self._lock:
            if client not in self._clients:
                self._clients.append(client)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="sieve-widgets-ticker", daemon=True
                )
                self._thread.start()

    def wake(self) -> None:
        """Tick soon rather than at the next interval (e.g. right after a submit)."""
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait(self.interval)
            self._wake.clear()
            with self._lock:
                clients = list(self._clients)
                if not clients:
                    self._thread = None
                    return
            for client in clients:
                try:
                    keep = client.tick()
                except Exception:  # one broken widget must not freeze every other one
                    log.exception("progress widget update failed")
                    keep = False
                if not keep:
                    with self._lock:
                        if client in self._clients:
                            self._clients.remove(client)


_TICKER = Ticker()


def get_ticker() -> Ticker:
    """The process-wide ticker all sieve widgets share."""
    return _TICKER
