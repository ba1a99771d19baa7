"""How calls and outcomes cross Ray: pickled by us as bytes, unless they hold a large buffer.

Ray serializes a Python object argument or return value through its own serialization context,
which costs several times what pickling the same small tuple costs; bytes it only copies. So a
call's request and its outcome travel as cloudpickle bytes — the outcome's are also what the
worker's journal keeps. A value holding a large buffer (a big numpy array: anything pickled
out of band) is left to Ray instead: it moves such buffers out of band, through its object
store, without the copies pickling them into bytes would make. Imported in the cluster's
workers too.
"""

from __future__ import annotations

import pickle
from typing import Any

import cloudpickle

__all__ = ["LARGE_BUFFER", "call_failed", "dumps_small", "loads"]

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
