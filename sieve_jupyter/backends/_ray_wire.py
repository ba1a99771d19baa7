"""How calls and outcomes cross Ray: pickled by us as bytes, unless they hold a large buffer.

Ray serializes a Python object argument or return value through its own serialization context,
which costs several times what pickling the same small tuple costs; bytes it only copies. So a
call's request and its outcome travel as cloudpickle bytes — the outcome's are also what the
worker's journal keeps. A value holding a large buffer (a big numpy array: anything pickled
out of band) is left to Ray instead: it moves such buffers out of band, through its object
store, without the copies pickling them into bytes would make. What goes through the hub
(side messages, cancels, replies) is always bytes (`dumps_all`): the hub only holds it, so it
never rebuilds a user's value (which it might not be able to import) nor a `sieve.File`, whose
content would land on the hub's node. Imported in the cluster's workers too.
"""

from __future__ import annotations

import pickle
from typing import Any

import cloudpickle

__all__ = [
    "LARGE_BUFFER",
    "SideMessageOrder",
    "call_failed",
    "dumps_all",
    "dumps_small",
    "loads",
]

#: bytes of one buffer from which a value is left to Ray's serialization (its threshold for
#: putting an argument in the object store is 100 KB)
LARGE_BUFFER = 64 * 1024


def dumps_small(obj: Any) -> bytes | None:
    """`obj` pickled (protocol 5, buffers in band), or None if it holds a buffer larger than
    `LARGE_BUFFER` (then not copied: pickling only measures it and stops copying)."""
    large = False

    def in_band(buffer: pickle.PickleBuffer) -> bool:
        nonlocal large
        large = large or memoryview(buffer).nbytes > LARGE_BUFFER
        return not large  # (True: pickled in the stream; once one is large, skipped)

    data = cloudpickle.dumps(obj, protocol=5, buffer_callback=in_band)
    return None if large else data


def dumps_all(obj: Any) -> bytes:
    """`obj` pickled whole (protocol 5, buffers in band), for the hub to hold."""
    data: bytes = cloudpickle.dumps(obj, protocol=5)
    return data


def loads(value: Any) -> Any:
    """What `dumps_small` made (bytes), or a value Ray rebuilt itself, as it was sent."""
    return cloudpickle.loads(value) if type(value) is bytes else value


def call_failed(job: str, cause: BaseException) -> TypeError:
    """The error of a job whose call could not be run (its arguments could not be rebuilt in
    the worker, say): raised in the kernel for a call Ray failed, in the worker for one of a
    group (`SieveWorker.calls`), which carries on with the others."""
    error = TypeError(
        f"job {job}: Ray could not run the call ({type(cause).__name__}: {cause}). Fix: pass "
        "values whose types the worker can import (plain data, numpy arrays, sieve.File, or "
        "types defined in the notebook)."
    )
    error.__cause__ = cause
    return error


class SideMessageOrder:
    """A worker's side messages, put back in the order it numbered them (1, 2, 3 ...).

    They reach the kernel two ways: through the hub while a job runs, and in the tail of the
    answer of the call that ran it. The hub's puller and the link's consumer are two threads,
    so a message shipped through the hub for one job can arrive before the answer of the call
    before it, whose tail holds the messages numbered below it. Delivered as it came, the
    tail's messages were then taken for old ones and dropped (an outcome among them left its
    job unsettled forever). Each message is held here until every one before it is out.
    Not thread-safe: the link's delivery lock guards it.
    """

    def __init__(self) -> None:
        #: the highest number handed out
        self.delivered = 0
        self._early: dict[int, Any] = {}

    @property
    def received(self) -> int:
        """The highest number that came (handed out or held back)."""
        return max(self.delivered, max(self._early, default=0))

    def take(self, numbered: list[tuple[int, Any]], lost_up_to: int = 0) -> list[Any]:
        """Add `numbered` ((number, message) pairs); returns the messages that can go out
        now, in order. Those numbered up to `lost_up_to` that have not come are taken as lost
        on the way (a hub that went away with them), so the ones after them go on."""
        early = self._early
        for number, message in numbered:
            if number > self.delivered:
                early[number] = message
        ready: list[Any] = []
        number = self.delivered
        while True:
            message = early.pop(number + 1, None)
            if message is not None:
                ready.append(message)
            elif number >= lost_up_to:
                break
            number += 1
        self.delivered = number
        return ready
