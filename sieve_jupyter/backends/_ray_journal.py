"""A Ray worker's journal: which job it ran last, and the outcomes the kernel may not have yet.

A Ray actor answers a call after it has moved on (its reply leaves from another thread), so an
actor that dies just after calls returned — the next job crashed at once — can take their
answers with it. A local worker cannot lose a result that way (it writes it before it reads the
next call), and the shared behaviour suite holds the Ray backend to the same: the worker keeps,
on its node's disk, one *state* record (rewritten in place when each job starts and ends) and
the outcome of each job it finished until the kernel says it has received it (each call carries
the jobs whose outcomes arrived since the previous one). After the actor died, a small task on
its node reads the folder (`read_journal`): the outcomes found are delivered as if the actor had
answered, the job that started and did not finish is the one to blame, and the calls after it
never started. An outcome larger than `KEEP_AT_MOST` is not kept (writing it twice would cost
too much): if its answer is lost, the job fails saying so, and is never run again.

Imported in the cluster's workers: nothing of the package but the runtime's dependencies.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterable
from typing import Any

import cloudpickle

__all__ = ["KEEP_AT_MOST", "Journal", "read_journal"]

#: bytes of a pickled outcome kept on disk until the kernel has it
KEEP_AT_MOST = 1 << 20
#: bytes of the one state record: "S <job>" (started) or "F <job>" (finished), padded
_RECORD = 1024
_STATE = "state"
_SUFFIX = ".outcome"


def _name(job: str) -> str:
    # (job ids come from function names, but nothing here relies on what they may hold)
    return job.encode().hex() + _SUFFIX


class Journal:
    """The worker's side: written on the actor's main thread only."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        os.makedirs(os.path.dirname(folder), exist_ok=True)  # (shared by the node's workers)
        os.makedirs(folder, mode=0o700, exist_ok=True)
        self._state = os.open(
            os.path.join(folder, _STATE), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600
        )

    def started(self, job: str) -> None:
        self._record("S", job)

    def finished(self, job: str) -> None:
        self._record("F", job)

    def keep(self, job: str, outcome: Any) -> None:
        """Keep `job`'s outcome until the kernel says it has it. Written whole under a
        temporary name first: a process killed half way leaves no outcome to misread."""
        data = cloudpickle.dumps(outcome)
        if len(data) > KEEP_AT_MOST:
            return
        path = os.path.join(self.folder, _name(job))
        partial = path + ".partial"
        with open(partial, "wb") as file:
            file.write(data)
        os.replace(partial, path)

    def received(self, jobs: Iterable[str]) -> None:
        """The kernel has these jobs' outcomes: drop them."""
        for job in jobs:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self.folder, _name(job)))

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def _record(self, state: str, job: str) -> None:
        """Rewrite the state record (one system call: a process cannot die half way)."""
        os.pwrite(self._state, f"{state} {job}\n".encode().ljust(_RECORD), 0)


def read_journal(folder: str) -> tuple[str, str, dict[str, bytes]] | None:
    """A dead worker's journal — ``("S" | "F", its last job, {job: pickled outcome})`` — and
    removes it; None if it has no record. Runs as a task on the worker's node."""
    try:
        with open(os.path.join(folder, _STATE), "rb") as record:
            text = record.read(_RECORD).decode(errors="replace").strip()
        outcomes: dict[str, bytes] = {}
        for entry in os.listdir(folder):
            if entry.endswith(_SUFFIX):
                with open(os.path.join(folder, entry), "rb") as file:
                    outcomes[bytes.fromhex(entry.removesuffix(_SUFFIX)).decode()] = file.read()
    except OSError:
        return None
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    state, _, job = text.partition(" ")
    return (state, job, outcomes) if state in ("S", "F") and job else None
