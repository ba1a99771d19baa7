"""Per-function job counts for the panel (queued / running / finished / errors / cancelled).

Counted once from the manager's job history when a panel subscribes, then moved along by each
job event, so a count costs O(1) per status change however many jobs a function has run. Only
jobs still queued or running are remembered one by one (the history may forget finished jobs
long before a session ends); a short memory of recently finished ids keeps a repeated final
event (the panel's own refresh after a cancel) from counting twice.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Any, cast

from sieve_jupyter.jupyter._channel_protocol import JOB_STATUSES, JobCounts

__all__ = ["JobCounter"]

_ACTIVE = frozenset({"queued", "processing"})
_RECENTLY_DONE = 4096


class JobCounter:
    """Counts of jobs per function and status. Not thread-safe: the channel's lock guards it."""

    def __init__(self) -> None:
        self._counts: dict[str, dict[str, int]] = {}
        self._active: dict[str, tuple[str, str]] = {}  # job id -> (function, status)
        self._done: OrderedDict[str, None] = OrderedDict()
        self._changed: set[str] = set()

    def reset(self, jobs: Iterable[Any]) -> None:
        """Count afresh from job snapshots (``JobFuture.snapshot()`` dicts)."""
        self._counts.clear()
        self._active.clear()
        self._done.clear()
        for snapshot in jobs:
            self.record(snapshot["job_id"], snapshot["function"], snapshot["status"])
        self._changed.clear()

    def record(self, job_id: str, function: str, status: str) -> None:
        """A job is now in `status` (repeated or out-of-date reports are ignored)."""
        if status not in JOB_STATUSES:
            return
        previous = self._active.get(job_id)
        if previous is None and job_id in self._done:
            return  # already counted as finished
        if previous is not None and previous[1] == status:
            return
        counts = self._counts.get(function)
        if counts is None:
            counts = self._counts[function] = dict.fromkeys(JOB_STATUSES, 0)
        if previous is not None:
            counts[previous[1]] -= 1
        counts[status] += 1
        if status in _ACTIVE:
            self._active[job_id] = (function, status)
        else:
            self._active.pop(job_id, None)
            self._done[job_id] = None
            if len(self._done) > _RECENTLY_DONE:
                self._done.popitem(last=False)
        self._changed.add(function)

    def forget(self, function: str) -> None:
        """A function was removed: drop its counts."""
        self._counts.pop(function, None)
        self._changed.discard(function)

    def all(self) -> dict[str, JobCounts]:
        """Every function's counts (for a snapshot)."""
        return {name: cast(JobCounts, dict(counts)) for name, counts in self._counts.items()}

    def take_changed(self) -> dict[str, JobCounts]:
        """The counts that moved since the last call (for a delta)."""
        changed = {
            name: cast(JobCounts, dict(self._counts[name]))
            for name in self._changed
            if name in self._counts
        }
        self._changed.clear()
        return changed
