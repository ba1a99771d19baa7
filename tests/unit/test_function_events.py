"""`function` events leave in the order their snapshots were taken, whatever the threads do."""

from __future__ import annotations

import itertools
import threading
import types
from typing import Any

from support import in_thread, joined

from sieve_jupyter.manager._events import EventBus
from sieve_jupyter.manager._record import FunctionRecord


def test_a_publisher_preempted_after_its_snapshot_never_sends_it_after_a_newer_one() -> None:
    """A worker's start thread takes a snapshot ("starting") and is preempted before it sends
    it; meanwhile the worker's reader publishes "warm". Sent in that order, the older state
    would be the last a view hears of, and a panel would show the function starting for good."""
    spec = types.SimpleNamespace(
        name="f", kind="function", environment=types.SimpleNamespace(content_hash=lambda: "h")
    )
    pool: Any = types.SimpleNamespace(state="starting", describe=list, queue=[], last_error=None)
    record = FunctionRecord(spec=spec, obj=None, code=b"", backend="local", workers=1)  # type: ignore[arg-type]
    record.pool = pool
    events = EventBus()
    seen: list[str] = []
    events.subscribe(lambda event: seen.append(event.data["state"]), {"function"})

    snapped, newer_sent = threading.Event(), threading.Event()
    take_snapshot = record.describe
    calls = itertools.count()

    def describe() -> dict[str, Any]:
        snapshot = take_snapshot()
        if next(calls) == 0:  # the first publisher
            snapped.set()
            newer_sent.wait(1.0)  # (the preemption: the other publisher gets its turn, if it can)
        return snapshot

    record.describe = describe  # type: ignore[method-assign]
    first, first_outcome = in_thread(lambda: record.publish(events))
    assert snapped.wait(30)
    pool.state = "warm"
    second, second_outcome = in_thread(lambda: record.publish(events))
    joined(second, second_outcome)
    newer_sent.set()
    joined(first, first_outcome)
    assert seen == ["starting", "warm"]
