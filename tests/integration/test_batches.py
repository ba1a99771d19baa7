"""Bursts of pushes travel several calls to a write; every job keeps its own life.

When calls pile up for a busy worker they go out together (one write of their frames), written
by the pushing thread every few dozen calls and by the pool's sender for the rest. Batching must
change nothing a user can see per job: each gets its own copy of its arguments, each goes
queued -> processing -> finished (or error, or cancelled; a cancel that reaches the worker before
the worker reaches the call skips it, even when the call already sits in what the worker has
read), each has its own output, results come back in order, and a worker dying in the middle of
a write fails only the job it was running while the rest runs on its replacement.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import threading
import time
import types
from pathlib import Path
from typing import Any

import pytest
from support import Unique, wait_for

import sieve_jupyter as sieve
from sieve_jupyter.manager import get_manager
from sieve_jupyter.manager._pool import _MAX_WINDOW
from sieve_jupyter.manager._worker_jobs import WorkerJobs

MiB = 1 << 20


@pytest.fixture
def marks() -> Any:
    """A folder the workers leave marks in (containers get it mounted at the same path)."""
    root = Path(os.environ.get("SIEVE_TEST_SHARED_DIR", tempfile.gettempdir()))
    with tempfile.TemporaryDirectory(prefix="sieve-batch-", dir=root) as folder:
        yield Path(folder)


@pytest.fixture
def gate(backend: str, unique: Unique, marks: Path) -> str:
    """The name of a warm function that returns once the path it is given exists (within a
    minute): a job calling it holds its worker until the test creates that path."""

    @sieve.function(name=unique("gate"), backend=backend)
    def gate(path: str) -> bool:
        deadline = time.monotonic() + 60
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.005)
        return True

    assert gate.run(str(marks)) is True
    return gate.name


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of calls in each write to a connected worker: the calls a writer took, less
    those it put back for the sender (a writer holds the worker's send lock from one to the
    other, so what it puts back is what it took from that worker last)."""
    sizes: list[int] = []
    last: dict[int, int] = {}  # each worker's last take, as an index into `sizes`
    take, put_back = WorkerJobs.take_unwritten, WorkerJobs.put_back

    def taken(self: WorkerJobs) -> list[Any]:
        batch = take(self)
        if batch:
            last[id(self)] = len(sizes)
            sizes.append(len(batch))
        return batch

    def returned(self: WorkerJobs, batch: list[Any]) -> None:
        assert sizes[last[id(self)]] == len(batch)
        sizes[last[id(self)]] = 0  # (not a write)
        put_back(self, batch)

    monkeypatch.setattr(WorkerJobs, "take_unwritten", taken)
    monkeypatch.setattr(WorkerJobs, "put_back", returned)
    return sizes


@pytest.fixture
def transitions() -> Any:
    """Every status each job went through, as the event bus told it."""
    seen: dict[str, list[str]] = {}
    lock = threading.Lock()

    def record(event: Any) -> None:
        with lock:
            statuses = seen.setdefault(event.data["job_id"], [])
            if not statuses or statuses[-1] != event.data["status"]:
                statuses.append(event.data["status"])

    unsubscribe = get_manager().events.subscribe(record, {"job"})
    yield seen
    unsubscribe()


def test_a_burst_goes_in_writes_of_many_calls_and_comes_back_in_order(
    backend: str, unique: Unique, writes: list[int], transitions: dict[str, list[str]]
) -> None:
    calls = [0]  # travels with the function: one per worker

    @sieve.function(name=unique("ordered"), backend=backend)
    def ordered(i: int) -> tuple[int, int]:
        print(f"job {i}")
        calls[0] += 1
        return i, calls[0]

    ordered.run(-1)
    writes.clear()
    futures = [ordered.push(i) for i in range(2_000)]
    results = [f.result(timeout=120) for f in futures]
    assert [i for i, _ in results] == list(range(2_000))
    runs = [n for _, n in results]
    assert runs == sorted(runs) and len(set(runs)) == 2_000  # run in order, each once
    assert [f.stdout for f in futures] == [f"job {i}\n" for i in range(2_000)]
    if backend != "ray":  # (Ray sends groups of calls its own way: tests/ray/test_ray_groups.py)
        assert sum(writes) == 2_000 and max(writes) > 1
    wait_for(lambda: all(transitions.get(f.job_id, [])[-1:] == ["finished"] for f in futures))
    assert all(transitions[f.job_id] == ["queued", "processing", "finished"] for f in futures), {
        f.job_id: transitions[f.job_id] for f in futures[:5]
    }
    assert all(f.started_at is not None and f.finished_at is not None for f in futures)


def test_a_cancel_reaches_a_job_whose_call_the_worker_already_holds(
    backend: str,
    unique: Unique,
    marks: Path,
    gate: str,
    writes: list[int],
    transitions: dict[str, Any],
) -> None:
    doomed = list(range(3, 300, 7))

    @sieve.function(name=unique("held"), backend=backend)
    def held(i: int) -> int:
        if i == 0:
            # Hold the worker on another function: its answer comes back on the control
            # connection after the cancels the test sent there, so they have all reached the
            # worker when job 0 returns. (A Ray actor could reach a call before its cancel
            # otherwise: docs/ray.md, "Limits".)
            (marks / "started").touch()
            sieve.function.get(gate).run(str(marks / "go"))
        if i in doomed:
            (marks / f"ran-{i}").touch()
        return i

    # warm, and timed as fast, so the pool sends many calls ahead to the worker. (A call the
    # worker was descheduled in, on a busy machine, times the function as slow for the next
    # dozens of calls and the pool then sends a few dozen ahead, not 150: so call until the
    # window is full again.)
    assert held.run(-1) == -1
    pool = get_manager().record(held.name).pool
    assert pool is not None
    for _ in range(2_000):
        if pool._window() == _MAX_WINDOW:
            break
        assert held.run(-1) == -1
    assert pool._window() == _MAX_WINDOW
    writes.clear()
    futures = [held.push(i) for i in range(300)]
    wait_for(lambda: (marks / "started").exists())
    if backend != "ray":
        # jobs 1.. went out while job 0 ran: the worker holds their calls already
        wait_for(lambda: sum(writes) >= 150)
    assert all(futures[i].cancel() for i in doomed)
    (marks / "go").touch()
    kept = [i for i in range(300) if i not in doomed]
    assert [futures[i].result(timeout=60) for i in kept] == kept
    assert not list(marks.glob("ran-*"))
    cancelled = [futures[i].job_id for i in doomed]
    wait_for(lambda: all(transitions.get(j, [])[-1:] == ["cancelled"] for j in cancelled))
    # a cancelled job never counted as started, even though its call had reached the worker
    assert all("processing" not in transitions[j] for j in cancelled)
    assert all(futures[i].started_at is None for i in doomed)
    assert held.run(7) == 7


def test_a_cancel_the_worker_was_too_busy_to_read_still_skips_its_call(
    backend: str, unique: Unique, marks: Path
) -> None:
    """A cancel reaches the worker on the control connection (on Ray: its mailbox at the hub),
    whose thread may not run before the worker's main thread moves on to the cancelled call:
    here the call before it keeps the interpreter's lock until it returns, so that thread
    cannot read the cancel meanwhile. (The cancelled call ran in 19 of 20 such rounds on a local
    worker, and 1 in 10 on Ray, when only that thread read cancels.) A local or Docker worker
    has the cancel once `cancel()` returns; on Ray it still travels through the hub (a few
    milliseconds), so there only cancels sent 200 ms before the call ahead returned count."""
    hold, travel = (0.3, 0.2) if backend == "ray" else (0.05, 0.0)

    @sieve.function(name=unique("greedy"), backend=backend)
    def greedy(mode: str, name: str = "") -> float:
        if mode == "hold":
            # Keep the interpreter's lock for about `hold` seconds: a call into C never offers
            # it to a thread asking for it, and the long switch interval keeps the code after
            # the call from offering it either.
            interval = sys.getswitchinterval()
            sys.setswitchinterval(10.0)
            try:
                started = time.perf_counter()
                sum(range(100_000))
                sum(range(int(hold * 100_000 / (time.perf_counter() - started))))
            finally:
                sys.setswitchinterval(interval)
        elif mode == "mark":
            (marks / name).touch()
        return time.time()

    greedy.run("mark", "warm")
    doomed: list[str] = []  # calls cancelled before the call ahead of them returned
    for round_ in range(200):
        if len(doomed) == 20:
            break
        for _ in range(10):  # (quick calls: the call below is then sent with the one ahead)
            greedy.run("quick")
        ahead = greedy.push("hold")
        name = f"ran-{round_}"
        future = greedy.push("mark", name)
        time.sleep(0.02)  # (the call is written to the worker, which runs the one ahead)
        assert future.cancel()
        cancelled_at = time.time()
        if cancelled_at + travel < ahead.result(timeout=60):  # it arrived while that one ran
            doomed.append(name)
    assert len(doomed) == 20
    greedy.run("mark", "last")  # (sent after every cancelled call: they have been skipped)
    assert [name for name in doomed if (marks / name).exists()] == []


def test_a_crash_in_the_middle_of_a_write_fails_only_the_running_job(
    backend: str, unique: Unique, marks: Path, writes: list[int]
) -> None:
    @sieve.function(name=unique("crashy"), backend=backend)
    def crashy(i: int) -> int:
        (marks / f"ran-{i}-{os.getpid()}").touch()
        if i == 500:
            os.kill(os.getpid(), signal.SIGKILL)
        return i

    crashy.run(-1)
    futures = [crashy.push(i) for i in range(1_000)]
    outcomes: list[Any] = []
    for f in futures:
        try:
            outcomes.append(f.result(timeout=120))
        except Exception as exc:  # noqa: BLE001 - compared below
            outcomes.append(exc)
    assert isinstance(outcomes[500], sieve.WorkerCrashedError)
    assert [o for i, o in enumerate(outcomes) if i != 500] == [i for i in range(1_000) if i != 500]
    # every job ran exactly once: none of the crashed write's others was lost or run twice
    runs = [p.name.split("-")[1] for p in marks.glob("ran-*")]
    assert sorted(int(r) for r in runs if r) == list(range(1_000))
    if backend != "ray":
        assert max(writes) > 1


def test_large_and_small_arguments_mixed_in_one_burst(backend: str, unique: Unique) -> None:
    @sieve.function(name=unique("mixed"), backend=backend)
    def mixed(i: int, data: bytes) -> tuple[int, int, int]:
        return i, len(data), data[-1] if data else -1

    mixed.run(0, b"")
    # large ones cross in shared memory, mid-sized ones inline but make a write of them too big
    # for the pushing thread to write (the sender does), small ones batch as usual
    sizes = {0: 2 * MiB, 5: 20_000}
    payloads = [bytes([i % 251]) * sizes.get(i % 10, 10) for i in range(400)]
    futures = [mixed.push(i, p) for i, p in enumerate(payloads)]
    expected = [(i, len(p), p[-1]) for i, p in enumerate(payloads)]
    assert [f.result(timeout=120) for f in futures] == expected


def test_calls_sent_together_do_not_share_their_arguments(
    backend: str, unique: Unique, marks: Path, gate: str, writes: list[int]
) -> None:
    """Each call gets its own copy of its arguments, as a call sent alone does: an object
    passed to several calls of one burst is not rebuilt once for all of them in the worker,
    where a call changing it in place would change it for the calls after it."""

    @sieve.function(name=unique("scale"), backend=backend)
    def scale(values, factor: float, wait: bool = False):  # type: ignore[no-untyped-def]
        # (no hint on `values`: a hint would have the call validate, and copy, the list)
        if wait:  # hold the worker so the calls behind pile up and go out together
            sieve.function.get(gate).run(str(marks / "go"))
        for i, v in enumerate(values):
            values[i] = v * factor  # in place
        return values

    shared = [1.0, 2.0, 3.0]
    held = scale.push(shared, 1.0, True)
    futures = [scale.push(shared, float(i)) for i in range(1, 40)]
    if backend != "ray":  # (Ray sends each call's arguments on their own)
        wait_for(lambda: sum(writes) >= 2)  # some calls went out behind the held one
    (marks / "go").touch()
    assert held.result(timeout=60) == shared
    assert [f.result(timeout=60) for f in futures] == [
        [v * i for v in shared] for i in range(1, 40)
    ]
    if backend != "ray":
        assert max(writes) > 1


def test_a_call_the_worker_cannot_rebuild_fails_alone_among_calls_sent_together(
    backend: str,
    unique: Unique,
    marks: Path,
    gate: str,
    writes: list[int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A type from a module only the kernel has: it pickles by reference here, and the worker
    # cannot import it. The calls written with it run as if it were not there.
    module = types.ModuleType("only_in_the_kernel")
    exec("class Thing:\n    pass", module.__dict__)  # noqa: S102
    monkeypatch.setitem(sys.modules, "only_in_the_kernel", module)

    @sieve.function(name=unique("kind"), backend=backend)
    def kind(value, wait: bool = False) -> str:  # type: ignore[no-untyped-def]
        if wait:
            sieve.function.get(gate).run(str(marks / "go"))
        return type(value).__name__

    held = kind.push(0, True)
    values: list[Any] = [1, "a", module.Thing(), 2.0, [3], module.Thing(), b"b"]
    futures = [kind.push(v) for v in values]
    if backend != "ray":
        wait_for(lambda: sum(writes) >= 2)
    (marks / "go").touch()
    assert held.result(timeout=60) == "int"
    for value, future in zip(values, futures, strict=True):
        if isinstance(value, module.Thing):
            with pytest.raises(TypeError, match="No module named 'only_in_the_kernel'"):
                future.result(timeout=60)
        else:
            assert future.result(timeout=60) == type(value).__name__
    if backend != "ray":
        assert max(writes) > 1
