"""The package leaves nothing in the temporary directory, whatever happens to its workers.

A separate Python process plays the kernel, with its own empty ``TMPDIR`` (so what other tests,
or other users of the machine, put in /tmp can neither hide nor fake a leftover). It starts
workers, crashes one, has one exit after an error, stops a function, stops a worker while it is
still starting, fails two starts (a worker that exits before connecting, one that never
connects in time), submits a form with an uploaded file, then exits with workers still running;
another kernel, with local or Docker workers, is killed outright. Afterwards its ``TMPDIR``
must be empty and every worker process gone.

To catch a worker while it starts, a ``sitecustomize`` module on the kernel's path (workers get
the kernel's path) holds workers of some functions before they connect, as a slow machine would.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import wait_for

REPO = Path(__file__).resolve().parents[2]

#: holds or breaks a worker at interpreter start, chosen by its function's name
SITECUSTOMIZE = textwrap.dedent(
    """
    import os, sys, time

    def _worker_id():
        args = sys.argv
        return args[args.index("--worker-id") + 1] if "--worker-id" in args[:-1] else ""

    _id = _worker_id()
    if _id.startswith(("temp-gated-", "temp-slow-")):
        # held before connecting until the test opens the gate (never, for temp-slow)
        _gate = os.path.join(os.environ["SJ_TEST_GATE_DIR"], "open")
        _deadline = time.monotonic() + 120
        while not os.path.exists(_gate) and time.monotonic() < _deadline:
            time.sleep(0.01)
    elif _id.startswith("temp-broken-"):
        sys.stderr.write("this worker breaks on purpose\\n")
        sys.stderr.flush()
        os._exit(5)
    """
)

#: seconds after which the kernel script prints every thread's stack and exits: a hang then
#: fails the test saying where it waits (the script takes a few seconds)
HANG_SECONDS = 180

KERNEL = textwrap.dedent(
    f"""
    import faulthandler, json, os, sys, time
    faulthandler.dump_traceback_later({HANG_SECONDS}, exit=True)
    import sieve_jupyter as sieve

    pids = set()

    def say(**data):
        # (in a file: the form shows its job's progress and result from the thread that
        # settles it, which outside IPython prints them, at any time, even mid-line)
        with open("report.json", "w") as handle:
            json.dump(data, handle)

    def wait_until(condition, what, timeout=60.0):
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, what
            time.sleep(0.01)

    def note_pids(handle):
        pids.update(w["pid"] for w in handle.workers if w.get("pid"))

    # start: two warm workers
    @sieve.function(name="temp-start", workers=2)
    def whoami() -> int:
        return os.getpid()

    whoami.run()
    wait_until(lambda: [w["state"] for w in whoami.workers] == ["ready", "ready"], "warm")
    note_pids(whoami)

    # a crash fails its job; the replacement worker takes the next call
    @sieve.function(name="temp-crash")
    def crash(die: bool) -> int:
        if die:
            os._exit(1)
        return os.getpid()

    pids.add(crash.run(False))
    try:
        crash.run(True)
    except sieve.WorkerCrashedError:
        pass
    else:
        raise AssertionError("the crash was not reported")
    pids.add(crash.run(False))

    # an error restarts the worker (restart_on_error, the default)
    @sieve.function(name="temp-restart")
    def fail(boom: bool) -> int:
        if boom:
            raise ValueError("boom")
        return os.getpid()

    pids.add(fail.run(False))
    try:
        fail.run(True)
    except ValueError:
        pass
    pids.add(fail.run(False))

    # stop
    whoami.stop()

    # stopped while starting: the process runs but has not connected yet
    @sieve.function(name="temp-gated")
    def gated() -> int:
        return 1

    future = gated.push()
    wait_until(lambda: [(w["state"], bool(w.get("pid"))) for w in gated.workers]
               == [("starting", True)], "a starting worker")
    note_pids(gated)
    gated.stop()
    assert future.cancelled()
    wait_until(lambda: gated.workers == [], "the starting worker gone")

    # failed starts: a worker that exits before connecting, one that never connects in time
    @sieve.function(name="temp-broken")
    def broken() -> int:
        return 1

    try:
        broken.run()
    except sieve.BackendError as exc:
        assert "exited with code 5 before connecting" in str(exc), exc
        assert "breaks on purpose" in str(exc), exc
    else:
        raise AssertionError("the broken worker started")

    @sieve.function(name="temp-slow")
    def slow() -> int:
        return 1

    sieve.configure(start_timeout=1)
    try:
        future = slow.push()
        wait_until(lambda: any(w.get("pid") for w in slow.workers) or future.done(), "slow")
        note_pids(slow)
        try:
            future.result(60)
        except sieve.BackendError as exc:
            assert "did not connect within 1 s" in str(exc), exc
        else:
            raise AssertionError("the slow worker connected")
    finally:
        sieve.configure(start_timeout=120)

    # an upload through a form reaches the worker
    from sieve_jupyter.jupyter.widgets import form

    @sieve.function(name="temp-upload")
    def size(doc: sieve.File) -> int:
        with open(doc.path, "rb") as handle:
            return len(handle.read())

    handle = form(size)
    handle.set(doc=b"hello")
    assert handle.submit().result(60) == 5
    note_pids(size)

    # now the gate opens for a worker that stays warm until the kernel exits
    open(os.path.join(os.environ["SJ_TEST_GATE_DIR"], "open"), "w").close()
    assert gated.run() == 1
    note_pids(gated)
    note_pids(crash)
    note_pids(fail)
    say(event="done", pids=sorted(pids))
    """
)

KILLED_KERNEL = textwrap.dedent(
    """
    import json, os, sys, time
    import sieve_jupyter as sieve

    @sieve.function(name="temp-killed", workers=2, backend=sys.argv[1])
    def whoami() -> int:
        return os.getpid()

    whoami.run()
    deadline = time.monotonic() + 120
    while [w["state"] for w in whoami.workers] != ["ready", "ready"]:
        assert time.monotonic() < deadline, whoami.workers
        time.sleep(0.01)
    # (a container's worker pids are the container's own: only local ones are checked)
    pids = [w["pid"] for w in whoami.workers] if sys.argv[1] == "local" else []
    print(json.dumps({"pids": pids}), flush=True)
    sys.stdin.read()  # until killed
    """
)


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def leftovers(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture
def private_tmp() -> Iterator[Path]:
    """An empty TMPDIR for the kernel process. Short, under /tmp: the package keeps socket
    paths short and would fall back to /tmp itself under a long one."""
    folder = Path(tempfile.mkdtemp(prefix="sieve-tmpcheck-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def kernel_environment(private_tmp: Path, gate_dir: Path) -> dict[str, str]:
    (gate_dir / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = dict(os.environ)
    env["TMPDIR"] = str(private_tmp)
    env["SJ_TEST_GATE_DIR"] = str(gate_dir)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(gate_dir), str(REPO), os.environ.get("PYTHONPATH")])
    )
    return env


def test_workers_and_uploads_leave_nothing_in_the_temporary_directory(
    private_tmp: Path, tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", KERNEL],
        env=kernel_environment(private_tmp, tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=HANG_SECONDS + 60,  # (the script's own bound comes first, with its stacks)
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    report: dict[str, Any] = json.loads((tmp_path / "report.json").read_text())
    assert report["event"] == "done"
    assert len(report["pids"]) >= 8  # every kind of worker above was seen
    wait_for(lambda: not any(alive(p) for p in report["pids"]))
    assert leftovers(private_tmp) == []


@pytest.mark.parametrize("backend", ["local", pytest.param("docker", marks=pytest.mark.docker)])
def test_a_killed_kernel_leaves_nothing_in_the_temporary_directory(
    backend: str, private_tmp: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "docker":
        request.getfixturevalue("docker_env")  # engine, base image and settings, or skip
    kernel = subprocess.Popen(
        [sys.executable, "-c", KILLED_KERNEL, backend],
        env=kernel_environment(private_tmp, tmp_path),
        cwd=tmp_path,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    pids: list[int] = []
    try:
        assert kernel.stdout is not None
        pids = json.loads(kernel.stdout.readline())["pids"]
        kernel.send_signal(signal.SIGKILL)  # no atexit, no cleanup of any kind
        kernel.wait(30)
        wait_for(lambda: not any(alive(p) for p in pids))  # workers notice and leave
        assert leftovers(private_tmp) == []
    finally:
        if kernel.poll() is None:
            kernel.kill()
        kernel.wait(30)
        for stream in (kernel.stdin, kernel.stdout):
            if stream is not None:
                stream.close()
        for pid in pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        if backend == "docker":
            from sieve_jupyter.backends.docker import DockerBackend

            reaper = DockerBackend()  # removes the killed kernel's containers, as the next
            try:  # kernel's first use of Docker would
                reaper.reap()
            finally:
                reaper.close()
