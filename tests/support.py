"""Helpers shared by the test modules (importable as `support`: tests/ is on the path)."""

from __future__ import annotations

import time
from collections.abc import Callable

#: the `unique` fixture's type: makes a function name unique to the running test
Unique = Callable[[str], str]


def wait_for(predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    """Poll until `predicate()` holds; fail after `timeout` seconds (a deadline, not a speed
    requirement: it only bounds how long a broken test hangs)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)
