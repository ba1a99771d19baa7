"""A worker that dies loses nothing and blames the right job, on every backend.

A worker can die at any moment: a segfault in a native library, the out-of-memory killer, a
SIGKILL from outside. Whatever it had computed must still reach the kernel, exactly the job it was
running fails (it may have had side effects, so it is never silently run again), and the jobs
queued behind it run on the replacement.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from support import Unique, wait_for

import sieve_jupyter as sieve


@pytest.fixture
def marks() -> Any:
    """A folder the workers leave marks in (containers get it mounted at the same path)."""
    root = Path(os.environ.get("SIEVE_TEST_SHARED_DIR", tempfile.gettempdir()))
    with tempfile.TemporaryDirectory(prefix="sieve-crash-", dir=root) as folder:
        yield Path(folder)


def _runs(marks: Path, i: int) -> int:
    return len(list(marks.glob(f"ran-{i}-*")))


@pytest.mark.parametrize("restart_on_error", [True, False], ids=["restart", "keep"])
def test_only_the_running_job_fails_and_no_result_is_lost(
    backend: str, unique: Unique, marks: Path, restart_on_error: bool
) -> None:
    @sieve.function(name=unique("crasher"), backend=backend, restart_on_error=restart_on_error)
    def crasher(i: int) -> int:
        (marks / f"ran-{i}-{os.urandom(4).hex()}").touch()
        if i == 3:
            os._exit(1)
        return i

    futures = [crasher.push(i) for i in range(10)]
    outcomes = [_outcome(f) for f in futures]
    assert outcomes[:3] == [0, 1, 2]
    assert isinstance(outcomes[3], sieve.WorkerCrashedError)
    assert f"job {futures[3].job_id}" in str(outcomes[3])
    assert _names_the_exit(backend, str(outcomes[3]), "exit code 1")
    assert outcomes[4:] == list(range(4, 10))
    assert [_runs(marks, i) for i in range(10)] == [1] * 10  # nothing ran twice


def test_map_yields_the_crash_in_its_place(backend: str, unique: Unique, marks: Path) -> None:
    @sieve.function(name=unique("crasher"), backend=backend)
    def crasher(i: int) -> int:
        (marks / f"ran-{i}-{os.urandom(4).hex()}").touch()
        if i == 3:
            os._exit(1)
        return i * 10

    results = list(crasher.map(range(10), return_exceptions=True))
    assert [r for i, r in enumerate(results) if i != 3] == [i * 10 for i in range(10) if i != 3]
    assert isinstance(results[3], sieve.WorkerCrashedError)
    assert _runs(marks, 3) == 1


def test_sigkill_during_a_burst_loses_nothing_and_fails_one_job_per_kill(
    backend: str, unique: Unique, marks: Path
) -> None:
    # Three jobs of a 10,000-job burst stop and wait to be killed, so each kill lands while a
    # known job runs: exactly those three fail, every other job finishes once with its result.
    doomed = {2_000, 5_000, 8_000}

    @sieve.function(name=unique("burst"), backend=backend)
    def burst(i: int) -> int:
        if i in doomed:
            (marks / f"ran-{i}-{os.getpid()}").touch()
            time.sleep(120)  # (killed long before)
        return i

    futures = [burst.push(i) for i in range(10_000)]
    for i in sorted(doomed):
        wait_for(lambda i=i: _runs(marks, i) == 1)
        _kill_worker(backend, burst.workers)
    outcomes = [_outcome(f) for f in futures]
    failed = {i for i, o in enumerate(outcomes) if isinstance(o, BaseException)}
    assert failed == doomed
    assert all(isinstance(outcomes[i], sieve.WorkerCrashedError) for i in doomed)
    assert all(_names_the_exit(backend, str(outcomes[i]), "SIGKILL") for i in doomed)
    assert [o for i, o in enumerate(outcomes) if i not in doomed] == [
        i for i in range(10_000) if i not in doomed
    ]
    assert all(_runs(marks, i) == 1 for i in doomed)


def _names_the_exit(backend: str, message: str, status: str) -> bool:
    """The crash message says how the worker ended. Ray reports that an actor's process died,
    not its exit status (a kill, the out-of-memory killer and an exit read the same there), so
    on Ray the message names the actor's death as Ray saw it instead."""
    if backend == "ray":
        return "the Ray actor on" in message and "worker process has died" in message
    return status in message


def _outcome(future: Any) -> Any:
    try:
        return future.result(timeout=120)
    except Exception as exc:  # noqa: BLE001 - compared by the test
        return exc


def _kill_worker(backend: str, workers: list[dict[str, Any]]) -> None:
    """SIGKILL the (only) worker from outside, as the out-of-memory killer would."""
    (worker,) = [w for w in workers if w["state"] == "ready"]
    if backend == "docker":
        subprocess.run(
            ["docker", "kill", "--signal", "KILL", worker["container"]],
            check=True,
            capture_output=True,
            timeout=60,
        )
    else:
        os.kill(worker["pid"], signal.SIGKILL)
