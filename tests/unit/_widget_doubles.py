"""Small stand-ins for widget unit tests: a JobFuture-shaped future, an event bus, a handle.

The real manager's futures are exercised by the kernel tests; these only carry the same
attributes so the widgets can be built and driven without worker processes.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any


class Status(enum.Enum):
    QUEUED = "queued"
    PROCESSING = "processing"
    FINISHED = "finished"
    ERROR = "error"
    CANCELLED = "cancelled"


@dataclass
class Event:
    kind: str
    data: Any


class EventBus:
    """Synchronous subscribe/publish, like the manager's bus."""

    def __init__(self) -> None:
        self.callbacks: list[Callable[[Any], None]] = []

    def subscribe(self, callback: Callable[[Any], None]) -> Callable[[], None]:
        self.callbacks.append(callback)
        return lambda: self.callbacks.remove(callback)

    def publish(self, kind: str, data: Any) -> None:
        for callback in list(self.callbacks):
            callback(Event(kind, data))


class FakeJob(Future[Any]):
    """A future with JobFuture's attributes, moved through its states by the test."""

    _ids = 0

    def __init__(self, function: str = "f", bus: EventBus | None = None) -> None:
        super().__init__()
        FakeJob._ids += 1
        self.job_id = f"job-{FakeJob._ids}"
        self.function = function
        self.status = Status.QUEUED
        self.logs: list[tuple[str, str]] = []
        self.outputs: list[Any] = []
        self.progress: tuple[float, str] | None = None
        self.submitted_at = time.time()
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.bus = bus

    @property
    def duration(self) -> float | None:
        if self.started_at is None:
            return None
        return (self.finished_at or time.time()) - self.started_at

    def snapshot(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "function": self.function, "status": self.status.value}

    def _publish(self) -> None:
        if self.bus is not None:
            self.bus.publish("job", self.snapshot())

    def start(self) -> None:
        self.status = Status.PROCESSING
        self.started_at = time.time()
        self.set_running_or_notify_cancel()
        self._publish()

    def finish(self, value: Any) -> None:
        if self.status is Status.QUEUED:
            self.start()
        self.status = Status.FINISHED
        self.finished_at = time.time()
        self._publish()
        self.set_result(value)

    def fail(self, exc: BaseException) -> None:
        if self.status is Status.QUEUED:
            self.start()
        self.status = Status.ERROR
        self.finished_at = time.time()
        self._publish()
        self.set_exception(exc)


class FakeHandle:
    """A handle whose push runs the Python function on a thread and returns a FakeJob."""

    def __init__(
        self, name: str, inputs: dict[str, Any], fn: Callable[..., Any], doc: str = ""
    ) -> None:
        self.spec = SimpleNamespace(name=name, inputs=inputs, doc=doc, signature="(...)")
        self.fn = fn
        self.pushed: list[dict[str, Any]] = []

    def push(self, *args: Any, **kwargs: Any) -> FakeJob:
        self.pushed.append(kwargs)
        job = FakeJob(self.spec.name)

        def run() -> None:
            try:
                value = self.fn(*args, **kwargs)
            except Exception as exc:
                job.fail(exc)
            else:
                job.finish(value)

        threading.Thread(target=run, daemon=True).start()
        return job
