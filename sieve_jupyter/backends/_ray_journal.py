"""A Ray worker's journal: which job it ran last, and the outcomes the kernel may not have yet.

A Ray actor answers a call after it has moved on (its reply leaves from another thread), so an
actor that dies just after calls returned — the next job crashed at once — can take their
answers with it. A local worker cannot lose a result that way (it writes it before it reads the
next call), and the shared behaviour suite holds the Ray backend to the same: the worker keeps,
on its node's disk, one *state* record (rewritten in place when each job starts and ends) and
the outcome of each job it finished until the kernel says it has received it (each call carries
the jobs whose outcomes arrived since the previous one), appended to one file. After the actor
died, a small task on its node reads the folder (`read_journal`): the outcomes found are
delivered as if the actor had answered, the job that started and did not finish is the one to
blame, and the calls after it never started. An outcome larger than `KEEP_AT_MOST` is not kept
(writing it twice would cost too much): if its answer is lost, the job fails saying so, and is
never run again. The outbox's thread also notes, in a file of its own, the highest side message
the hub holds (`shipped`): what the hub holds reaches the kernel even though the actor died, and
the kernel waits for it before it decides which results were lost.

Imported in the cluster's workers: nothing of the package but the runtime's dependencies.
"""

from __future__ import annotations

import os
import shutil
import struct
from collections.abc import Iterable
from typing import Any

import cloudpickle

__all__ = ["KEEP_AT_MOST", "Journal", "read_journal"]

#: bytes of a pickled outcome kept on disk until the kernel has it
KEEP_AT_MOST = 1 << 20
#: bytes of the one state record: "S <job>" (started) or "F <job>" (finished), padded
_RECORD = 1024
_STATE = "state"
_OUTCOMES = "outcomes"
_SHIPPED = "shipped"
_NUMBER = struct.Struct("<Q")
#: an outcome record's header: magic, epoch, job id length, outcome length
_HEADER = struct.Struct("<4sIII")
_MAGIC = b"SJO1"
#: the outcomes file is rewritten from its start (with only what the kernel lacks) past this
_COMPACT_AT = 8 * KEEP_AT_MOST


class Journal:
    """The worker's side: written on the actor's main thread only (`shipped` excepted: the
    outbox's thread writes it, to a file of its own).

    Outcomes are appended to one file, one `pwrite` each (a process cannot die half way
    through one), and also held in memory until the kernel has them. When it has them all, or
    the file grows past `_COMPACT_AT`, writing starts again at the file's start under a new
    *epoch* (with what it still lacks): the reader stops at the first record of an older epoch.
    A record left from an older epoch is for a job the kernel already has, which it ignores.
    """

    def __init__(self, folder: str) -> None:
        self.folder = folder
        os.makedirs(os.path.dirname(folder), exist_ok=True)  # (shared by the node's workers)
        os.makedirs(folder, mode=0o700, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        self._state = os.open(os.path.join(folder, _STATE), flags, 0o600)
        self._outcomes = os.open(os.path.join(folder, _OUTCOMES), flags, 0o600)
        self._shipped = os.open(os.path.join(folder, _SHIPPED), flags, 0o600)
        self._epoch = 1
        self._offset = 0
        #: job -> (job id, pickled outcome) not confirmed by the kernel yet
        self._kept: dict[str, tuple[bytes, bytes]] = {}

    def started(self, job: str) -> None:
        self._record("S", job)

    def finished(self, job: str) -> None:
        self._record("F", job)

    def shipped(self, number: int) -> None:
        """The hub holds this worker's side messages up to `number`."""
        os.pwrite(self._shipped, _NUMBER.pack(number), 0)

    def keep(self, job: str, outcome: Any) -> None:
        """Keep `job`'s outcome until the kernel says it has it."""
        self.keep_pickled(job, cloudpickle.dumps(outcome))

    def keep_pickled(self, job: str, data: bytes) -> None:
        """`keep`, for an outcome already pickled (the bytes the worker answers with)."""
        if len(data) > KEEP_AT_MOST:
            return
        entry = (job.encode(), data)
        self._kept[job] = entry
        if self._offset + len(data) > _COMPACT_AT:
            self._restart(list(self._kept.values()))
        else:
            self._append([entry])

    def received(self, jobs: Iterable[str]) -> None:
        """The kernel has these jobs' outcomes: drop them."""
        for job in jobs:
            self._kept.pop(job, None)
        if not self._kept and self._offset:
            self._restart([])

    def _restart(self, entries: list[tuple[bytes, bytes]]) -> None:
        self._epoch += 1
        self._offset = 0
        self._append(entries)

    def _append(self, entries: list[tuple[bytes, bytes]]) -> None:
        if not entries:
            return
        chunk = b"".join(
            _HEADER.pack(_MAGIC, self._epoch, len(job), len(data)) + job + data
            for job, data in entries
        )
        os.pwrite(self._outcomes, chunk, self._offset)
        self._offset += len(chunk)

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def _record(self, state: str, job: str) -> None:
        """Rewrite the state record (one system call: a process cannot die half way)."""
        os.pwrite(self._state, f"{state} {job}\n".encode().ljust(_RECORD), 0)


def read_journal(folder: str) -> tuple[str, str, dict[str, bytes], int] | None:
    """A dead worker's journal — ``("S" | "F", its last job, {job: pickled outcome}, the
    highest side message the hub holds)`` — and removes it; None if it has no record. Runs
    as a task on the worker's node."""
    try:
        with open(os.path.join(folder, _STATE), "rb") as record:
            text = record.read(_RECORD).decode(errors="replace").strip()
        with open(os.path.join(folder, _OUTCOMES), "rb") as file:
            outcomes = _outcome_records(file.read())
        with open(os.path.join(folder, _SHIPPED), "rb") as file:
            raw = file.read(_NUMBER.size)
        shipped = _NUMBER.unpack(raw)[0] if len(raw) == _NUMBER.size else 0
    except OSError:
        return None
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    state, _, job = text.partition(" ")
    return (state, job, outcomes, shipped) if state in ("S", "F") and job else None


def _outcome_records(raw: bytes) -> dict[str, bytes]:
    """The records of the first epoch in `raw`, up to the first of another (or a bad one)."""
    outcomes: dict[str, bytes] = {}
    offset = 0
    epoch = None
    while offset + _HEADER.size <= len(raw):
        magic, this_epoch, job_size, data_size = _HEADER.unpack_from(raw, offset)
        start = offset + _HEADER.size
        end = start + job_size + data_size
        if magic != _MAGIC or (epoch is not None and this_epoch != epoch) or end > len(raw):
            break
        epoch = this_epoch
        outcomes[raw[start : start + job_size].decode()] = raw[start + job_size : end]
        offset = end
    return outcomes
