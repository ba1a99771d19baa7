"""Workers belong to their kernel: no orphans, whatever way the kernel ends.

A separate Python process plays the kernel (so it can be SIGKILLed): it starts two warm workers,
prints their pids, then obeys commands on stdin. Process liveness is read from /proc, where a
zombie (exited, not yet reaped by whoever adopted it) counts as gone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support import wait_for

import sieve_jupyter as sieve
from sieve_jupyter.manager import get_manager

KERNEL = textwrap.dedent(
    """
    import json, os, signal, sys, time
    import sieve_jupyter as sieve

    @sieve.function(name="lifetime", workers=2)
    def whoami(seconds: float = 0) -> int:
        if seconds:
            # (what the worker writes to stderr then cannot tell it of the kernel's end: a
            # write to the kernel that finds it gone ends the worker too)
            sys.stderr = open(os.devnull, "w")
            time.sleep(seconds)
        return os.getpid()

    def say(**data):
        print(json.dumps(data), flush=True)

    signal.signal(signal.SIGINT, lambda *_: say(event="interrupted"))
    whoami.run()
    deadline = time.monotonic() + 60
    while sum(w["state"] == "ready" for w in whoami.workers) < 2:
        assert time.monotonic() < deadline, whoami.workers
        time.sleep(0.02)
    say(event="ready", kernel=os.getpid(), workers=[w["pid"] for w in whoami.workers])
    for line in sys.stdin:
        if line.strip() == "run":
            say(event="ran", pid=whoami.run())
        elif line.strip() == "hold":  # a job that keeps its worker busy for ten minutes
            held = whoami.push(600)
            while held.status != "processing":
                time.sleep(0.01)
            say(event="holding")
        elif line.strip() == "exit":
            break
    """
)


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    state = stat.rpartition(")")[2].split()[0]
    return state not in ("Z", "X")


class Kernel:
    """The kernel process and the two-way line protocol to it."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", KERNEL],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group, like a kernel under Jupyter
        )
        try:
            ready = self.read()
        except BaseException:
            self.end()
            raise
        assert ready["event"] == "ready", ready
        self.pid: int = ready["kernel"]
        self.workers: list[int] = ready["workers"]
        assert len(set(self.workers)) == 2 and all(alive(p) for p in self.workers)

    def read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line, f"the kernel ended early (code {self.process.wait(30)})"
        data: dict[str, Any] = json.loads(line)
        return data

    def send(self, command: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()

    def end(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(30)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()


@pytest.fixture
def kernel() -> Iterator[Kernel]:
    started = Kernel()
    yield started
    started.end()
    for pid in started.workers:  # never leave a worker behind, even when a test failed
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_killed_kernel_leaves_no_workers(kernel: Kernel) -> None:
    os.kill(kernel.pid, signal.SIGKILL)
    kernel.process.wait(30)
    wait_for(lambda: not any(alive(p) for p in kernel.workers))


def test_killed_kernel_leaves_no_worker_running_a_job(kernel: Kernel) -> None:
    """A worker in the middle of a job learns of the kernel's end on its control connection
    (its main thread is busy) and leaves at once, not when the job ends."""
    kernel.send("hold")
    assert kernel.read()["event"] == "holding"
    os.kill(kernel.pid, signal.SIGKILL)
    kernel.process.wait(30)
    wait_for(lambda: not any(alive(p) for p in kernel.workers), timeout=30)


def test_kernel_exiting_normally_stops_its_workers(kernel: Kernel) -> None:
    kernel.send("exit")
    assert kernel.process.wait(60) == 0
    wait_for(lambda: not any(alive(p) for p in kernel.workers))


def test_workers_have_their_own_session_and_survive_the_interrupt_button(
    kernel: Kernel,
) -> None:
    kernel_session = os.getsid(kernel.pid)
    for pid in kernel.workers:
        assert os.getsid(pid) == pid != kernel_session
        assert os.getpgid(pid) != os.getpgid(kernel.pid)
    # The notebook's interrupt button signals the kernel's process group.
    os.killpg(kernel.pid, signal.SIGINT)
    assert kernel.read() == {"event": "interrupted"}
    kernel.send("run")
    ran = kernel.read()
    assert ran["event"] == "ran" and ran["pid"] in kernel.workers  # the same warm worker
    assert all(alive(p) for p in kernel.workers)


def test_stop_ends_the_worker_processes(unique: Callable[[str], str]) -> None:
    @sieve.function(name=unique("stoppable"), workers=2)
    def whoami() -> int:
        return os.getpid()

    whoami.run()
    wait_for(lambda: [w["state"] for w in whoami.workers] == ["ready", "ready"])
    pids = [w["pid"] for w in whoami.workers]
    assert all(alive(p) for p in pids)
    whoami.stop()
    wait_for(lambda: not any(alive(p) for p in pids))
    wait_for(lambda: whoami.workers == [])
    assert whoami.state == "stopped"
    # and the function still works afterwards, on fresh workers
    assert whoami.run() not in pids


def test_removing_a_function_ends_its_workers_and_its_pool_threads(
    unique: Callable[[str], str],
) -> None:
    name = unique("removable")

    @sieve.function(name=name)
    def whoami() -> int:
        return os.getpid()

    pid = whoami.run()
    get_manager().unregister(name)
    wait_for(lambda: not alive(pid))
    # (a stopped pool may start workers again; a removed one never will, so nothing waits)
    wait_for(lambda: not [t for t in threading.enumerate() if t.name.endswith(f"-{name}")])


def test_a_replaced_registration_refuses_jobs_from_its_old_handle(
    unique: Callable[[str], str],
) -> None:
    name = unique("replaced")

    @sieve.Model(name=name)
    class Versioned:
        def __setup__(self) -> None:
            self.version = 1

        def __predict__(self) -> int:
            return self.version

    old = Versioned
    assert old.run() == 1

    @sieve.Model(name=name)  # a changed __setup__: new workers, the old ones retire
    class Versioned:  # type: ignore[no-redef]
        def __setup__(self) -> None:
            self.version = 2

        def __predict__(self) -> int:
            return self.version

    assert Versioned.run() == 2
    jobs_before = [f.job_id for f in get_manager().jobs()]
    # rather than a job that waits forever on a pool that will never start a worker
    with pytest.raises(sieve.SieveError, match="replaced or removed"):
        old.push()
    assert [f.job_id for f in get_manager().jobs()] == jobs_before
    assert sieve.function.get(name).run() == 2


SCRIPT_WITH_LARGE_ARGUMENTS = textwrap.dedent(
    """
    import os, signal, threading, time
    import sieve_jupyter as sieve

    @sieve.function(name="sizer")
    def size(data: bytes) -> int:
        return len(data)

    # Large frames from the main thread are written by a helper thread, which must not keep
    # the interpreter alive once the script is done, wherever an interrupt landed.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    assert size.run(b"warm") == 4  # later calls find the worker idle: this thread writes them
    big = b"x" * (64 << 20)
    for delay in (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02):
        timer = threading.Timer(delay, os.kill, (os.getpid(), signal.SIGINT))
        try:
            try:
                timer.start()
                size.run(big)
            finally:  # (a call done before the interrupt fires gets it here)
                timer.join()
                time.sleep(0.05)
        except KeyboardInterrupt:
            pass
    assert size.run(b"y" * (1 << 20)) == 1 << 20
    # Whatever it started, the package never holds up the interpreter's exit.
    others = [t for t in threading.enumerate() if t is not threading.main_thread()]
    assert all(t.daemon for t in others), [t.name for t in others if not t.daemon]
    print("done", flush=True)
    """
)


def test_a_script_that_sent_large_arguments_exits() -> None:
    process = subprocess.run(
        [sys.executable, "-c", SCRIPT_WITH_LARGE_ARGUMENTS],
        capture_output=True,
        text=True,
        timeout=120,  # (a bound on a hang: the script itself takes about a second)
    )
    assert process.returncode == 0, process.stderr
    assert process.stdout == "done\n"
