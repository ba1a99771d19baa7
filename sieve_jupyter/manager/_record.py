"""`FunctionRecord`: one registration, as the manager keeps it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sieve_jupyter.manager._events import EventBus
    from sieve_jupyter.manager._pool import WorkerPool
    from sieve_jupyter.spec import ArgumentChecker, FunctionSpec

__all__ = ["FunctionRecord"]


@dataclass(eq=False)
class FunctionRecord:
    """A registered function: its spec, the object shipped to workers, and its pool."""

    spec: FunctionSpec
    obj: Any
    #: the pickled code, or how to make it (see `payload`)
    code: bytes | Callable[[], bytes]
    backend: str
    workers: int
    #: fingerprint of `__setup__` + environment; equal keys allow a hot swap (see `register`)
    setup_key: str | None = None
    #: source lines of the user's code by file name, so worker tracebacks can quote them
    #: where the files do not exist (containers, bundles)
    sources: dict[str, list[str]] = field(default_factory=dict)
    pool: WorkerPool | None = None
    registered_at: float = field(default_factory=time.time)
    #: the checks before a first worker starts passed (see `Manager._preflight`)
    checked: bool = False
    #: how calls' arguments are checked, made by the first call through a handle (every
    #: handle of this registration shares it; a replaced registration takes it along)
    argument_checker: ArgumentChecker | None = field(default=None, init=False, repr=False)
    #: held from a snapshot to its event (see `publish`)
    _publishing: threading.RLock = field(default_factory=threading.RLock, init=False, repr=False)
    #: held while the code is pickled (see `payload`)
    _pickling: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def payload(self) -> bytes:
        """The code as workers load it, pickled when first needed rather than where it was
        defined: a function is pickled with the globals it names as they are *then*, and a
        helper defined below it (further down the cell, in a later cell), or the function's
        own name when it calls itself, is bound only after its decorator ran.

        Raises:
            Exception: the code cannot be pickled (it names an open file, a lock ...).
        """
        code = self.code
        if not isinstance(code, bytes):
            with self._pickling:
                code = self.code
                if not isinstance(code, bytes):
                    code = self.code = code()
        return code

    def publish(self, events: EventBus) -> None:
        """Send a ``function`` event with the state as it is now.

        Snapshots go out in the order they were taken: without the lock, a thread preempted
        between its snapshot and its event (a worker's start thread, say) sent an older state
        after a newer one (its reader's "ready"), and a view kept showing the older one until
        the function changed again: the side panel a worker still starting, a server
        ``STARTING``."""
        if events.wants("function"):
            with self._publishing:
                events.emit("function", self.describe())

    def describe(self) -> dict[str, Any]:
        """A JSON-able snapshot: the data of a ``function`` event."""
        pool = self.pool
        return {
            "name": self.spec.name,
            "kind": self.spec.kind,
            "backend": self.backend,
            "state": pool.state if pool is not None else "idle",
            "workers": pool.describe() if pool is not None else [],
            "size": self.workers,
            "spec_hash": self.spec.environment.content_hash(),
            "queued": len(pool.queue) if pool is not None else 0,
            "error": pool.last_error if pool is not None else None,
        }
