"""Which calls a Ray worker may have begun, in a record that outlives its node.

A worker's journal (`_ray_journal.py`) says exactly which job it ran last, but it lives on the
worker's node: when the node is lost, the kernel only knows that the first call without an
answer was running, not whether the worker had begun the calls sent behind it. So before a
worker starts a call that was sent behind another, it needs a *grant* that covers it, written
to the cluster's key-value store (in the GCS, on the head node: a worker node's loss does not
touch it) and acknowledged: "this worker may have begun the calls numbered up to N". The kernel
numbers the calls it sends to each worker and marks those sent behind another (`RayLink`);
after a node is lost it reads the grant: the calls numbered above it never began, and run on
the replacement; only those the grant covers fail, saying they may have begun.

A grant costs a round trip to the GCS (about 0.6 ms here) before the call it covers starts.
It covers the calls the worker expects to run in `_COVER` such round trips (from the time its
jobs and its grants take), so grants cost at most about 1/`_COVER` of its time: a call of tens
of milliseconds gets a grant of its own (the kernel then knows exactly), quick calls share one.
A call that runs longer than expected, or an idle worker, must not leave the calls queued
behind it covered: once nothing new started for `LOWER_AFTER` seconds, a thread of the
worker's brings the grant back down to the last call started (under the lock `admit` takes,
so a call never starts on a grant being lowered). So only the calls a worker started within
the last `LOWER_AFTER` seconds before it died can be in doubt. A call sent with nothing ahead
of it needs no grant (a `.run()` loop never waits for one).

Imported in the cluster's workers: nothing of the package.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["Grants", "delete_grants", "grant_key", "read_grant", "sweep_grants"]

#: the key-value store's namespace for grants; a key is "<ray namespace>/<hub name>/<worker>"
_NAMESPACE = "sieve-jupyter-grants"
#: a grant covers the calls expected to run in this many grants' time
_COVER = 20
#: most calls one grant covers
_MOST = 4096
#: seconds without a call starting after which a grant reaching past the last one started is
#: brought down to it
LOWER_AFTER = 0.02


def grant_key(namespace: str, hub_name: str, worker_id: str) -> str:
    return f"{namespace}/{hub_name}/{worker_id}"


def _store() -> Any:
    """Ray's key-value store functions, or None where this Ray lacks them."""
    try:
        from ray.experimental import internal_kv
    except ImportError:
        return None
    return internal_kv if hasattr(internal_kv, "_internal_kv_put") else None


class Grants:
    """The worker's side: its main thread calls `admit` as each call that needs a grant
    starts; a thread of its own lowers a grant that reaches past what runs."""

    def __init__(self, key: str) -> None:
        store = _store()
        self._put: Callable[..., Any] | None = store._internal_kv_put if store else None
        self._key = key
        self._lock = threading.Lock()
        #: the highest call number granted, and the last started under a grant
        self.granted = 0
        self._started = 0
        #: calls started under a grant so far (the lowering thread's clock)
        self._starts = 0
        #: set while the grant reaches past the last call started
        self._ahead = threading.Event()
        #: seconds a grant takes, and a job (moving averages; None until a job was timed)
        self._cost = 0.001
        self._job: float | None = None
        if self._put is not None:
            threading.Thread(target=self._lower, name="sieve-grants", daemon=True).start()

    @property
    def works(self) -> bool:
        """Whether grants are recorded (the kernel takes every call as begun otherwise)."""
        return self._put is not None

    def admit(self, number: int) -> None:
        """Call `number` starts now: record a grant covering it (and the calls expected soon
        after) unless one does; returns once the store has it."""
        with self._lock:
            if number > self.granted and self._put is not None:
                self._record(number + self._span() - 1)
                if self.granted > number:
                    self._ahead.set()
            self._started = number
            self._starts += 1

    def close(self) -> None:
        """The worker leaves: its grant goes, and none is written after (the kernel deletes
        it too, but may do so before a lowering in flight lands)."""
        with self._lock:
            if self._put is None:
                return
            self._put = None
            self._ahead.set()  # (the lowering thread sees it closed, and ends)
            delete_grants(self._key)

    def _record(self, upto: int) -> None:
        """Write the grant (under the lock). If the store cannot be reached, a grant that
        should grow stays as it was (see docs/ray.md, "Limits"); one to lower stays higher,
        which only takes more calls as begun."""
        assert self._put is not None  # (both callers look, under the lock: not closed)
        started = time.perf_counter()
        try:
            self._put(self._key, str(upto), True, namespace=_NAMESPACE)
        except Exception:  # noqa: BLE001 - the GCS is unreachable
            return
        self._cost += (time.perf_counter() - started - self._cost) / 8
        self.granted = upto

    def _lower(self) -> None:
        while True:
            self._ahead.wait()
            starts = self._starts
            time.sleep(LOWER_AFTER)
            with self._lock:
                if self._put is None:
                    return
                if self._starts == starts and self.granted > self._started:
                    self._record(self._started)
                if self.granted <= self._started:
                    self._ahead.clear()

    def ran(self, seconds: float) -> None:
        """A job took `seconds` (what the next grants' span is made from)."""
        self._job = seconds if self._job is None else self._job + (seconds - self._job) / 8

    def _span(self) -> int:
        if self._job is None:
            return 1
        return max(1, min(_MOST, int(_COVER * self._cost / max(self._job, 1e-6))))


def read_grant(key: str) -> int:
    """The highest call number the worker was granted (0: none); raises when the store
    cannot be read."""
    store = _store()
    if store is None:
        raise RuntimeError("this Ray has no key-value store API")
    value = store._internal_kv_get(key, namespace=_NAMESPACE)
    return int(value) if value else 0


def delete_grants(key: str, *, prefix: bool = False) -> None:
    """Drop a worker's grant (its key), or with `prefix` those of every key it begins."""
    store = _store()
    if store is None:
        return
    try:
        store._internal_kv_del(key, del_by_prefix=prefix, namespace=_NAMESPACE)
    except Exception:  # noqa: BLE001, S110 - Ray is shutting down: the next sweep takes them
        pass


def sweep_grants(hub_alive: Callable[[str, str], bool]) -> None:
    """Drop the grants left by kernels that ended without closing (their hub is gone)."""
    store = _store()
    if store is None:
        return
    try:
        keys = store._internal_kv_list("", namespace=_NAMESPACE)
    except Exception:  # noqa: BLE001 - not readable: the next connection tries again
        return
    hubs = {tuple(key.decode().split("/")[:2]) for key in keys if key.count(b"/") >= 2}
    for namespace, hub_name in hubs:
        if not hub_alive(namespace, hub_name):
            delete_grants(f"{namespace}/{hub_name}/", prefix=True)
