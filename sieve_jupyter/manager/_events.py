"""A tiny synchronous event bus: the manager publishes, the notebook layers subscribe.

Subscribers run on the manager's threads and must return quickly; renderers (widgets, the
labextension channel) coalesce on their own side. Publishing with no subscribers costs one
truth test, so the hot path pays nothing when nobody listens.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Event", "EventBus"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    """One thing that happened. `data` is JSON-able (see docs/INTERNALS.md for the kinds)."""

    kind: str
    data: dict[str, Any]


class EventBus:
    """Fan-out of events to subscribers; a failing subscriber is logged, never propagated."""

    def __init__(self) -> None:
        self._subscribers: tuple[Callable[[Event], None], ...] = ()
        self._lock = threading.Lock()

    def __bool__(self) -> bool:
        return bool(self._subscribers)

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Call `callback(event)` for every event from now on; returns the unsubscribe function."""
        with self._lock:
            self._subscribers = (*self._subscribers, callback)

        def unsubscribe() -> None:
            with self._lock:
                self._subscribers = tuple(s for s in self._subscribers if s is not callback)

        return unsubscribe

    def emit(self, kind: str, data: dict[str, Any]) -> None:
        event = Event(kind, data)
        for callback in self._subscribers:
            try:
                callback(event)
            except Exception:  # noqa: BLE001 - one broken view must not break the manager
                _log.exception("sieve event subscriber %r failed on %s", callback, kind)
