"""Helpers shared by the test modules (importable as `support`: tests/ is on the path)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

#: the `unique` fixture's type: makes a function name unique to the running test
Unique = Callable[[str], str]

#: the project's root: the processes a test starts import the package from it
ROOT = Path(__file__).resolve().parents[1]


def script_env(**changes: str | None) -> dict[str, str]:
    """This test's environment for a process it starts, the package importable from `ROOT`,
    with `changes` (a None removes the variable)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def run_script(
    source: str, path: Path, *, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `source` as ``python path`` in a process of its own (in `path`'s folder, with
    `script_env()` unless `env` is given; a file, so tracebacks quote its lines); fails the
    test, with what it printed, unless it exits with 0."""
    path.write_text(textwrap.dedent(source))
    done = subprocess.run(
        [sys.executable, str(path)],
        env=script_env() if env is None else env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=path.parent,
    )
    assert done.returncode == 0, f"{path.name} failed:\n{done.stdout}\n{done.stderr}"
    return done


@contextmanager
def thread_on_cpu(cpu: int) -> Iterator[None]:
    """Keep the calling thread on `cpu` (Linux) for the block, then let it run where it
    could before."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def wait_for(predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    """Poll until `predicate()` holds; fail after `timeout` seconds (a deadline, not a speed
    requirement: it only bounds how long a broken test hangs)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


def sleeps_in(wchan: Path, timeout: float = 10) -> str:
    """What a thread reading a socket sleeps in once it does, "poll" or "read", from its
    `wchan` (Linux: `/proc/self/task/TID/wchan`, or `/proc/PID/wchan` for another process's
    main thread). It may sleep elsewhere a moment on the way (waiting for the GIL); `timeout`
    bounds how long a thread that never sleeps reading keeps the test waiting."""
    deadline = time.monotonic() + timeout
    while True:
        where = wchan.read_text()
        if "poll" in where:
            return "poll"
        if "unix_stream_read" in where:
            return "read"
        if time.monotonic() > deadline:
            raise AssertionError(f"the thread never went to sleep reading (it is in {where!r})")
        time.sleep(0.001)


def in_thread(target: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    """Run `target` on a thread; the returned list gets its result or its exception."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(target())
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def joined(thread: threading.Thread, outcome: list[Any]) -> Any:
    """Wait for an `in_thread` thread (a bound on a hang, not a speed requirement) and return
    what its target returned or raised."""
    thread.join(30)
    assert not thread.is_alive(), "the thread never finished"
    assert len(outcome) == 1
    return outcome[0]


def call_interrupted(delay: float, target: Callable[[], Any]) -> Any:
    """Call `target()` with a SIGINT sent to this process after `delay` seconds, as the
    notebook's stop button does; return its result or the `KeyboardInterrupt`.

    The interrupt always lands inside this call, wherever it falls: when `target` returns
    before it fires, it surfaces while the timer is joined, which is caught here too, instead of
    escaping into whatever runs next (pytest itself takes a stray one as "stop the session").
    """
    timer = threading.Timer(delay, os.kill, (os.getpid(), signal.SIGINT))
    try:
        try:
            timer.start()
            return target()
        finally:
            timer.join()
            time.sleep(0.05)  # (the interrupt is handled by now: it cannot reach the caller)
    except KeyboardInterrupt as interrupt:
        return interrupt


def backend_ready(request: pytest.FixtureRequest, name: str) -> str:
    """Make backend `name` usable for the requesting test (its tier's engine or cluster),
    skipping when its tier's fixtures are not loaded; returns the name."""
    if name == "docker":
        try:
            request.getfixturevalue("docker_backend_ready")
        except pytest.FixtureLookupError:
            pytest.skip("the docker tier's fixtures are not available")
    elif name == "ray":
        request.getfixturevalue("ray_cluster")
    return name


def processes_under(directory: Path) -> list[int]:
    """Processes whose command line or working directory lies under `directory` (a
    deployment's server runs its bundle from there; its workers work in it)."""
    found = []
    text = str(directory)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(entry / "cwd")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state == "Z":
            continue
        if text in cmdline or cwd.startswith(text):
            found.append(int(entry.name))
    return found
