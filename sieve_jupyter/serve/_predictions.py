"""A prediction as the HTTP API shows it: Cog's envelope over a manager `JobFuture`.

Statuses map one to one: queued -> ``starting``, processing -> ``processing``, finished ->
``succeeded``, error -> ``failed``, cancelled -> ``canceled``. Finished predictions are kept
for `keep_seconds`, so ``GET /predictions/{id}`` can poll them.
"""

from __future__ import annotations

import collections
import datetime
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sieve_jupyter.manager import JobFuture, JobStatus

__all__ = ["Prediction", "PredictionStore", "iso", "status_of"]

_STATUS = {
    JobStatus.QUEUED: "starting",
    JobStatus.PROCESSING: "processing",
    JobStatus.FINISHED: "succeeded",
    JobStatus.ERROR: "failed",
    JobStatus.CANCELLED: "canceled",
}
TERMINAL = frozenset({"succeeded", "failed", "canceled"})


def iso(timestamp: float | None) -> str | None:
    """Epoch seconds as Cog writes times: ISO 8601, UTC, microseconds."""
    if timestamp is None:
        return None
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).isoformat()


def status_of(future: JobFuture[Any]) -> str:
    return _STATUS[future.status]


@dataclass(eq=False)
class Prediction:
    """One prediction: what was asked, and the job that answers it."""

    id: str
    function: str
    input: dict[str, Any]
    future: JobFuture[Any]
    created_at: float = field(default_factory=time.time)
    webhook: str | None = None
    webhook_events: frozenset[str] = frozenset()
    #: turns the job's result (JSON values and `sieve.File`s) into JSON (files -> URLs)
    encode: Callable[[Any], Any] = lambda value: value
    #: called once when the prediction is complete (removes its uploaded files)
    cleanup: list[Callable[[], None]] = field(default_factory=list)
    _output: Any = None
    _encoded: bool = False

    @property
    def status(self) -> str:
        return _STATUS[self.future.status]

    @property
    def done(self) -> bool:
        return self.future.done()

    def output(self) -> Any:
        future = self.future
        if future.streaming:
            if self._encoded:
                return self._output
            items = [self.encode(item) for item in future.outputs]
            if future.done():
                self._output, self._encoded = items, True
            return items
        if not future.done() or future.cancelled() or future.exception() is not None:
            return None
        if not self._encoded:
            self._output, self._encoded = self.encode(future.result()), True
        return self._output

    def error(self) -> tuple[str | None, str]:
        """(the error message, the remote traceback) of a failed prediction."""
        future = self.future
        if not future.done() or future.cancelled():
            return None, ""
        exc = future.exception()
        if exc is None:
            return None, ""
        tb = getattr(exc, "remote_traceback", "") or ""
        return str(exc) or type(exc).__name__, tb

    def logs(self) -> str:
        text = "".join(text for _, text in self.future.logs)
        _, tb = self.error()
        if tb:
            text += ("" if not text or text.endswith("\n") else "\n") + tb
        return text

    def envelope(self) -> dict[str, Any]:
        """The prediction as Cog's API returns it."""
        future = self.future
        error, _ = self.error()
        started = future.started_at
        finished = future.finished_at if future.done() else None
        predict_time = (finished - started) if (started is not None and finished) else None
        return {
            "id": self.id,
            "status": self.status,
            "input": self.input,
            "output": self.output(),
            "error": error,
            "logs": self.logs(),
            "metrics": {} if predict_time is None else {"predict_time": predict_time},
            "created_at": iso(self.created_at),
            "started_at": iso(started),
            "completed_at": iso(finished),
        }

    def start_envelope(self) -> dict[str, Any]:
        """The prediction as it stands when it starts (the ``start`` webhook's body): whether
        the job is already done by the time the webhook is sent does not change what it says."""
        started = self.future.started_at
        return {
            **self.envelope(),
            "status": "starting" if started is None else "processing",
            "output": None,
            "error": None,
            "logs": "",
            "metrics": {},
            "completed_at": None,
        }


class PredictionStore:
    """Predictions by id: running ones, and finished ones for `keep_seconds` (at most
    `limit` of them, oldest dropped first)."""

    def __init__(self, keep_seconds: float, limit: int = 10_000) -> None:
        self.keep_seconds = keep_seconds
        self.limit = limit
        self._items: collections.OrderedDict[str, Prediction] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, prediction_id: str) -> Prediction | None:
        return self._items.get(prediction_id)

    def add(self, prediction: Prediction) -> None:
        with self._lock:
            self._items[prediction.id] = prediction
            self._prune()

    def _prune(self) -> None:
        items = self._items
        now = time.time()
        while items:
            oldest = next(iter(items.values()))
            if not oldest.done:
                break
            finished = oldest.future.finished_at or now
            if len(items) <= self.limit and now - finished < self.keep_seconds:
                break
            items.popitem(last=False)

    def running(self) -> list[Prediction]:
        with self._lock:
            return [p for p in self._items.values() if not p.done]
