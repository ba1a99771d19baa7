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
        self._subscribers: tuple[tuple[Callable[[Event], None], frozenset[str] | None], ...] = ()
        #: the kinds someone listens for (None: every kind); read it instead of calling `wants`
        #: where every instruction counts
        self.wanted: frozenset[str] | None = frozenset()
        self._lock = threading.Lock()

    def __bool__(self) -> bool:
        return bool(self._subscribers)

    def wants(self, kind: str) -> bool:
        """Whether anyone listens for `kind` (so publishers can skip building the event)."""
        wanted = self.wanted
        return wanted is None or kind in wanted

    def subscribe(
        self, callback: Callable[[Event], None], kinds: set[str] | None = None
    ) -> Callable[[], None]:
        """Call `callback(event)` for every event (of `kinds`, if given) from now on; returns
        the unsubscribe function."""
        entry = (callback, None if kinds is None else frozenset(kinds))
        with self._lock:
            self._subscribers = (*self._subscribers, entry)
            self._recompute()

        def unsubscribe() -> None:
            with self._lock:
                self._subscribers = tuple(s for s in self._subscribers if s is not entry)
                self._recompute()

        return unsubscribe

    def _recompute(self) -> None:
        wanted: set[str] = set()
        for _, kinds in self._subscribers:
            if kinds is None:
                self.wanted = None
                return
            wanted |= kinds
        self.wanted = frozenset(wanted)

    def emit(self, kind: str, data: dict[str, Any]) -> None:
        event = Event(kind, data)
        for callback, kinds in self._subscribers:
            if kinds is not None and kind not in kinds:
                continue
            try:
                callback(event)
            except Exception:  # noqa: BLE001 - one broken view must not break the manager
                _log.exception("sieve event subscriber %r failed on %s", callback, kind)
