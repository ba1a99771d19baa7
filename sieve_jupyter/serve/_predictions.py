"""A prediction as the HTTP API shows it: Cog's envelope over a manager `JobFuture`.

Statuses map one to one: queued -> ``starting``, processing -> ``processing``, finished ->
``succeeded``, error -> ``failed``, cancelled -> ``canceled``. Finished predictions are kept
for `keep_seconds`, so ``GET /predictions/{id}`` can poll them.

A finished prediction keeps its envelope, not its job: a job's future holds its arguments,
result, logs, lock and callbacks, a dozen objects the garbage collector walks on every full
pass, and a server keeps up to 10,000 finished predictions. Measured with a trivial predictor
before this: the tracked objects grew by about 20 per request, and full passes over them took
up to 136 ms, each landing on one request.
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
    """One prediction: what was asked, and the job that answers it (`future`, None once the
    prediction is settled: see the module docstring)."""

    id: str
    function: str
    input: dict[str, Any]
    future: JobFuture[Any] | None
    created_at: float = field(default_factory=time.time)
    webhook: str | None = None
    webhook_events: frozenset[str] = frozenset()
    #: turns the job's result (JSON values and `sieve.File`s) into JSON (files -> URLs)
    encode: Callable[[Any], Any] = lambda value: value
    _output: Any = None
    _encoded: bool = False
    #: why the result could not be put into JSON (a file it returned cannot be read): the
    #: prediction then failed, saying so
    _output_error: str | None = None
    #: the envelope of the finished prediction, once it was asked for
    _final: dict[str, Any] | None = None
    _finished_at: float | None = None

    @property
    def status(self) -> str:
        if self.future is None:
            return str(self._settled()["status"])
        if self._output_error is not None:
            return "failed"
        return _STATUS[self.future.status]

    @property
    def done(self) -> bool:
        return self.future is None or self.future.done()

    @property
    def finished_at(self) -> float | None:
        future = self.future
        if future is None:
            return self._finished_at
        return future.finished_at if future.done() else None

    def cancel(self) -> None:
        """Cancel the job, unless it is over."""
        if self.future is not None:
            self.future.cancel()

    def output(self) -> Any:
        future = self.future
        if future is None:
            return self._settled()["output"]
        if self._encoded:
            return self._output
        if future.streaming:
            items = [self.encode_item(item) for item in future.outputs]
            if future.done() or self._output_error is not None:
                self._output, self._encoded = items, True
            return items
        if not future.done() or future.cancelled() or future.exception() is not None:
            return None
        self._output, self._encoded = self.encode_item(future.result()), True
        return self._output

    def encode_item(self, value: Any) -> Any:
        """`value` (the result, or a streamed item) as JSON; None, failing the prediction
        with the reason, when a `sieve.File` in it is gone or cannot be read."""
        try:
            return self.encode(value)
        except OSError as exc:
            if self._output_error is None:
                self._output_error = (
                    f"{self.function}: its output file {exc.filename or ''} cannot be read "
                    f"({exc.strerror or exc}). Fix: return a sieve.File that still exists when "
                    "the function returns (not one in a temporary folder it removes)."
                )
            return None

    def envelope(self) -> dict[str, Any]:
        """The prediction as Cog's API returns it. Once it is done, the same dict each time
        (callers must not change it), and the prediction lets go of its job."""
        future = self.future
        if future is None:
            return self._settled()
        done = future.done()  # (read first: a job that ends meanwhile is settled next time)
        output = self.output()  # (first: an output that cannot be encoded fails it)
        error, traceback = _error(future)
        error = self._output_error or error
        logs = "".join(text for _, text in future.logs)
        if traceback:
            logs += ("" if not logs or logs.endswith("\n") else "\n") + traceback
        started = future.started_at
        finished = future.finished_at if done else None
        predict_time = (finished - started) if (started is not None and finished) else None
        envelope = {
            "id": self.id,
            "status": self.status,
            "input": self.input,
            "output": output,
            "error": error,
            "logs": logs,
            "metrics": {} if predict_time is None else {"predict_time": predict_time},
            "created_at": iso(self.created_at),
            "started_at": iso(started),
            "completed_at": iso(finished),
        }
        if done:
            self._final, self._finished_at = envelope, finished
            self.future, self._output, self.encode = None, None, _keep
        return envelope

    def _settled(self) -> dict[str, Any]:
        assert self._final is not None  # (set when `future` was let go)
        return self._final

    def start_envelope(self) -> dict[str, Any]:
        """The prediction as it stands when it starts (the ``start`` webhook's body): whether
        the job is already done by the time the webhook is sent does not change what it says."""
        envelope = self.envelope()
        return {
            **envelope,
            "status": "starting" if envelope["started_at"] is None else "processing",
            "output": None,
            "error": None,
            "logs": "",
            "metrics": {},
            "completed_at": None,
        }


def _error(future: JobFuture[Any]) -> tuple[str | None, str]:
    """(the error message, the remote traceback) of a failed job."""
    if not future.done() or future.cancelled():
        return None, ""
    exc = future.exception()
    if exc is None:
        return None, ""
    tb = getattr(exc, "remote_traceback", "") or ""
    return str(exc) or type(exc).__name__, tb


def _keep(value: Any) -> Any:
    return value


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
            finished = oldest.finished_at or now
            if len(items) <= self.limit and now - finished < self.keep_seconds:
                break
            items.popitem(last=False)

    def running(self) -> list[Prediction]:
        with self._lock:
            return [p for p in self._items.values() if not p.done]
