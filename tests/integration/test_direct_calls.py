"""Direct calls: a `.run()` that finds a worker idle writes the call and reads the outcome on
the calling thread (manager/_direct.py). Real workers throughout; the behaviour-level tests run
on every backend whose workers connect to the kernel (local, docker).

Whether the direct path was taken is observed with a spy on `WorkerPool.finish_direct` (the
one place a direct result is settled): the point of the path is speed, which tests never time,
so without the spy a regression to the queued path would pass unnoticed.
"""

from __future__ import annotations

import dataclasses
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
from support import (
    Unique,
    backend_ready,
    call_interrupted,
    in_thread,
    joined,
    sleeps_in,
    thread_on_cpu,
    wait_for,
)

import sieve_jupyter as sieve
from sieve_jupyter import WorkerCrashedError
from sieve_jupyter.manager import JobStatus, get_manager
from sieve_jupyter.manager._affinity import current_cpu
from sieve_jupyter.manager._events import Event
from sieve_jupyter.manager._pool import WorkerPool


@pytest.fixture(
    params=[
        pytest.param("local", id="local"),
        pytest.param("docker", id="docker", marks=pytest.mark.docker),
    ]
)
def backend(request: pytest.FixtureRequest) -> str:
    """The backends with direct calls: those whose workers connect to the kernel (a linked
    worker, on Ray, has no reply connection: its `.run()` is queued like a `.push()`, which
    the shared behaviour suite covers)."""
    return backend_ready(request, request.param)


@pytest.fixture
def direct_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Job ids of the `.run()` calls that came back on the direct path."""
    seen: list[str] = []
    original = WorkerPool.finish_direct

    def spy(self: WorkerPool, worker: Any, future: Any, *rest: Any, **named: Any) -> None:
        seen.append(future.job_id)
        original(self, worker, future, *rest, **named)

    monkeypatch.setattr(WorkerPool, "finish_direct", spy)
    return seen


def latest_job() -> Any:
    return get_manager().jobs(1)[0]


def test_run_on_an_idle_worker_is_a_direct_call_and_a_normal_job(
    backend: str, unique: Unique, direct_calls: list[str]
) -> None:
    @sieve.Model(name=unique("counter"), backend=backend)
    class Counter:
        def __setup__(self) -> None:
            self.calls = 0

        def __predict__(self, step: int) -> int:
            self.calls += step
            return self.calls

    assert Counter.run(1) == 1  # the first call waits for the worker to start: queued
    events: list[Event] = []
    unsubscribe = get_manager().events.subscribe(events.append, {"job"})
    try:
        assert [Counter.run(2) for _ in range(3)] == [3, 5, 7]
    finally:
        unsubscribe()
    assert len(direct_calls) == 3
    for job_id in direct_calls:
        job = get_manager().job(job_id)
        assert job.status is JobStatus.FINISHED and job.result() in (3, 5, 7)
        assert job.worker_id is not None and job.started_at is not None
        assert job.finished_at is not None and job.duration is not None
        seen = [e.data["status"] for e in events if e.data["job_id"] == job_id]
        assert seen == ["queued", "processing", "finished"]  # in order, each once


def test_printed_output_is_complete_when_run_returns(
    backend: str, unique: Unique, direct_calls: list[str]
) -> None:
    @sieve.function(name=unique("chatty"), backend=backend)
    def chatty(n: int) -> int:
        for i in range(n):
            print(f"line {i}")
        print("to stderr", file=sys.stderr)
        return n

    chatty.run(0)
    for n in (1, 3):
        assert chatty.run(n) == n
        job = latest_job()  # read at once: no waiting for the output to trickle in
        assert job.stdout == "".join(f"line {i}\n" for i in range(n))
        assert job.stderr == "to stderr\n"
    assert chatty.run(0) == 0  # nothing printed but stderr: still complete
    assert latest_job().stderr == "to stderr\n"


def test_a_worker_dying_during_a_direct_call_fails_only_that_call(
    backend: str, unique: Unique, direct_calls: list[str]
) -> None:
    @sieve.Model(name=unique("fragile"), backend=backend)
    class Fragile:
        def __setup__(self) -> None:
            self.token = os.urandom(8).hex()  # (pids repeat across containers)

        def __predict__(self, die: bool) -> str:
            if die:
                os._exit(7)
            return self.token

    first = Fragile.run(False)
    with pytest.raises(WorkerCrashedError, match="exit code 7"):
        Fragile.run(True)
    assert latest_job().status is JobStatus.ERROR
    replacement = Fragile.run(False)  # a fresh worker; the lane of the dead one is gone
    assert replacement != first
    wait_for(lambda: Fragile.workers[0]["inflight"] == 0)
    before = len(direct_calls)
    assert Fragile.run(False) == replacement
    assert len(direct_calls) == before + 1


@pytest.mark.parametrize("restart_on_error", [False, True])
def test_an_error_in_a_direct_call_keeps_its_type_and_the_restart_policy(
    unique: Unique, restart_on_error: bool
) -> None:
    @sieve.Model(name=unique("picky"), restart_on_error=restart_on_error)
    class Picky:
        def __setup__(self) -> None:
            self.setup_pid = os.getpid()
            self.calls = 0

        def __predict__(self, value: int) -> tuple[int, int]:
            self.calls += 1
            if value < 0:
                raise ValueError(f"negative: {value}")
            return self.setup_pid, self.calls

    pid, _ = Picky.run(1)
    with pytest.raises(ValueError, match="negative: -1") as info:
        Picky.run(-1)
    assert "raise ValueError" in info.value.remote_traceback  # type: ignore[attr-defined]
    after_pid, calls = Picky.run(1)
    if restart_on_error:
        assert (after_pid, calls) != (pid, 3)  # a new worker ran __setup__ again
        assert calls == 1
    else:
        assert (after_pid, calls) == (pid, 3)  # the warm state survived the error


@pytest.mark.usefixtures("interruptible")
def test_interrupting_a_direct_call_cancels_it_and_keeps_the_warm_worker(
    unique: Unique, direct_calls: list[str]
) -> None:
    @sieve.Model(name=unique("sleeper"))
    class Sleeper:
        def __setup__(self) -> None:
            self.setups = 1
            self.pid = os.getpid()

        def __predict__(self, seconds: float) -> tuple[int, int]:
            time.sleep(seconds)
            return self.pid, self.setups

    pid, _ = Sleeper.run(0)
    wait_for(lambda: Sleeper.workers[0]["inflight"] == 0)
    # The notebook's stop button is a SIGINT to the kernel: here, to this process.
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        Sleeper.run(60)
    assert time.monotonic() - started < 30  # (a bound on a hang, not a speed requirement)
    timer.join()
    cancelled = latest_job()
    assert cancelled.status is JobStatus.CANCELLED
    # The worker was interrupted, not replaced, and its lane was handed back: the reader
    # settles the cancelled job (inflight 0), the helper thread that read the reply connection
    # frees the lane a moment later.
    wait_for(lambda: Sleeper.workers[0]["inflight"] == 0)
    (worker,) = get_manager().record(Sleeper.name).pool.workers.values()  # type: ignore[union-attr]
    wait_for(lambda: not worker.lane.locked())
    before = len(direct_calls)
    assert Sleeper.run(0) == (pid, 1)
    assert len(direct_calls) == before + 1


def test_many_threads_calling_run_on_one_worker_all_get_their_own_results(
    unique: Unique, direct_calls: list[str]
) -> None:
    @sieve.function(name=unique("square"))
    def square(x: int) -> int:
        return x * x

    square.run(0)
    results: dict[int, list[int]] = {}
    pushed = [square.push(x) for x in range(100)]  # pushes in flight alongside the runs

    def caller(base: int) -> None:
        results[base] = [square.run(base + i) for i in range(150)]

    threads = [threading.Thread(target=caller, args=(k * 1000,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(t.is_alive() for t in threads), "a .run() never returned"
    for base, values in results.items():
        assert values == [(base + i) ** 2 for i in range(150)]
    assert [f.result(timeout=60) for f in pushed] == [x * x for x in range(100)]
    # However the calls interleaved, the lane was handed back each time: the idle worker
    # takes the next call directly.
    before = len(direct_calls)
    assert square.run(7) == 49
    assert len(direct_calls) == before + 1


def test_argument_the_worker_cannot_rebuild_fails_that_run_only(
    unique: Unique, monkeypatch: pytest.MonkeyPatch, direct_calls: list[str]
) -> None:
    module = types.ModuleType("only_in_this_kernel")
    exec("class Thing:\n    pass", module.__dict__)  # noqa: S102
    monkeypatch.setitem(sys.modules, "only_in_this_kernel", module)

    @sieve.function(name=unique("pid-of"))
    def pid_of(value: Any) -> int:
        return os.getpid()

    pid = pid_of.run(1)
    wait_for(lambda: pid_of.workers[0]["inflight"] == 0)
    with pytest.raises(TypeError, match="cannot be rebuilt in the worker") as info:
        pid_of.run(module.Thing())
    assert "only_in_this_kernel" in str(info.value)
    assert pid_of.run(2) == pid  # the same warm worker carries on, on the direct path
    assert direct_calls == [latest_job().job_id]


def test_a_value_the_kernel_cannot_rebuild_fails_that_run_only(
    unique: Unique, tmp_path: Path, direct_calls: list[str]
) -> None:
    @sieve.function(name=unique("exotic"))
    def exotic(make: bool, where: str) -> Any:
        # A type from a module that exists only in the worker's process.
        if not make:
            return os.getpid()
        Path(where, "only_in_the_worker.py").write_text("class Thing:\n    pass\n")
        sys.path.insert(0, where)
        import only_in_the_worker  # type: ignore[import-not-found]

        return only_in_the_worker.Thing()

    where = tempfile.mkdtemp(dir=tmp_path)
    pid = exotic.run(False, where)
    wait_for(lambda: exotic.workers[0]["inflight"] == 0)
    with pytest.raises(TypeError, match="cannot be rebuilt in the kernel") as info:
        exotic.run(True, where)
    assert "only_in_the_worker" in str(info.value)
    assert latest_job().status is JobStatus.ERROR
    assert exotic.run(False, where) == pid


def test_runs_without_busy_polling(unique: Unique, direct_calls: list[str]) -> None:
    previous = sieve.config.busy_poll_us
    sieve.configure(busy_poll_us=0)
    try:

        @sieve.function(name=unique("plain"))
        def plain(x: int) -> int:
            return x + 1

        assert [plain.run(i) for i in range(20)] == list(range(1, 21))
        assert len(direct_calls) >= 19
    finally:
        sieve.configure(busy_poll_us=previous)


def _worker_cpus(name: str) -> set[int]:
    record = get_manager().record(name)
    assert record.pool is not None
    (worker,) = record.pool.workers.values()
    return os.sched_getaffinity(worker.process.host_pid)


def _worker_sleeps_in(name: str) -> str:
    """What the worker's main thread sleeps in once idle: "read" or "poll" (its `wchan`)."""
    record = get_manager().record(name)
    assert record.pool is not None
    (worker,) = record.pool.workers.values()
    return sleeps_in(Path(f"/proc/{worker.process.host_pid}/wchan"))


@pytest.mark.skipif(current_cpu() is None, reason="no sched_getcpu / sched_setaffinity here")
def test_a_quick_run_keeps_the_worker_on_the_callers_cpu_until_calls_are_pushed(
    unique: Unique, direct_calls: list[str]
) -> None:
    previous = sieve.config.busy_poll_us
    sieve.configure(busy_poll_us=0)  # (never polling: every call finds the worker asleep)
    try:

        @sieve.function(name=unique("quick"))
        def quick(x: int) -> int:
            return x + 1

        home = os.sched_getaffinity(0)
        assert quick.run(0) == 1  # (its first call is not timed yet: left where it is)
        assert _worker_cpus(quick.name) == home
        with thread_on_cpu(min(home)):
            assert [quick.run(i) for i in range(10)] == list(range(1, 11))
            assert len(direct_calls) >= 9
            assert _worker_cpus(quick.name) == {min(home)}
            # between followed calls the worker sleeps in the read of its next call (one
            # system call, not a poll and a read: see FrameReader.sleep_next_wait)
            assert _worker_sleeps_in(quick.name) == "read"
            # pushed calls run beside their caller: the worker gets its own CPUs back
            assert [f.result() for f in [quick.push(i) for i in range(50)]] == list(range(1, 51))
            assert _worker_cpus(quick.name) == home
            assert _worker_sleeps_in(quick.name) == "poll"  # (its results went on the data
            # connection, whose reads would be woken for nothing by the kernel taking them)
    finally:
        sieve.configure(busy_poll_us=previous)


@pytest.mark.skipif(current_cpu() is None, reason="no sched_getcpu / sched_setaffinity here")
@pytest.mark.parametrize("why", ["slow calls", "follow_caller=False"])
def test_a_worker_is_left_where_it_is_for_slow_calls_or_when_told(
    unique: Unique, direct_calls: list[str], why: str
) -> None:
    previous = dataclasses.asdict(sieve.config)
    sieve.configure(busy_poll_us=0, follow_caller=why != "follow_caller=False")
    try:
        pause = 0.002 if why == "slow calls" else 0.0

        @sieve.function(name=unique("steady"))
        def steady(x: int) -> int:
            time.sleep(pause)
            return x

        assert steady.run(0) == 0
        home = _worker_cpus(steady.name)
        with thread_on_cpu(min(os.sched_getaffinity(0))):
            assert [steady.run(i) for i in range(8)] == list(range(8))
            assert len(direct_calls) >= 7
            assert _worker_cpus(steady.name) == home
    finally:
        sieve.configure(**previous)


def test_the_job_history_keeps_the_newest_jobs_up_to_its_limit(unique: Unique) -> None:
    previous = sieve.config.job_history
    sieve.configure(job_history=25)
    try:

        @sieve.function(name=unique("tick"))
        def tick(x: int) -> int:
            return x

        runs = [tick.run(i) for i in range(40)]
        pushed = [tick.push(i) for i in range(40, 60)]
        assert [f.result(timeout=60) for f in pushed] == list(range(40, 60))
        assert runs == list(range(40))
        kept = get_manager().jobs()
        assert len(kept) == 25
        assert [job.result() for job in kept] == list(range(59, 34, -1))  # newest first
    finally:
        sieve.configure(job_history=previous)


def test_an_error_amid_a_burst_of_pushes_fails_only_its_job(unique: Unique) -> None:
    # The failing call's worker restarts (restart_on_error=True) right after reporting the
    # error, with later calls already sent to it: the report must not be left behind in the
    # worker's send queue, or the exit would be blamed on the next job as a crash.
    @sieve.function(name=unique("seven"))
    def not_seven(i: int) -> int:
        if i == 7:
            raise KeyError("seven")
        return 2 * i

    not_seven.run(0)
    futures = [not_seven.push(i) for i in range(60)]
    outcomes = [f.exception(timeout=120) for f in futures]
    assert isinstance(outcomes[7], KeyError) and "seven" in str(outcomes[7])
    assert [i for i, e in enumerate(outcomes) if e is not None] == [7]
    assert [f.result() for i, f in enumerate(futures) if i != 7] == [
        2 * i for i in range(60) if i != 7
    ]


def test_stopping_the_workers_ends_a_waiting_run_with_cancelled(unique: Unique) -> None:
    @sieve.function(name=unique("long"))
    def long(seconds: float) -> float:
        time.sleep(seconds)
        return seconds

    long.run(0)
    wait_for(lambda: long.workers[0]["inflight"] == 0)
    caller, outcome = in_thread(lambda: long.run(60))
    wait_for(lambda: latest_job().status is JobStatus.PROCESSING)
    long.stop()
    assert isinstance(joined(caller, outcome), sieve.JobCancelledError)
    assert long.run(0.0) == 0.0  # a new job starts a new worker


def test_cancelling_a_running_direct_call_from_elsewhere_interrupts_it(
    unique: Unique, direct_calls: list[str]
) -> None:
    # As the side panel's cancel button does, from another thread than the one in .run().
    @sieve.Model(name=unique("napper"))
    class Napper:
        def __setup__(self) -> None:
            self.token = os.urandom(8).hex()

        def __predict__(self, seconds: float) -> str:
            time.sleep(seconds)
            return self.token

    token = Napper.run(0)
    wait_for(lambda: Napper.workers[0]["inflight"] == 0)
    caller, outcome = in_thread(lambda: Napper.run(60))
    wait_for(lambda: latest_job().status is JobStatus.PROCESSING)
    assert latest_job().cancel()
    assert isinstance(joined(caller, outcome), sieve.JobCancelledError)
    wait_for(lambda: Napper.workers[0]["inflight"] == 0)
    before = len(direct_calls)
    assert Napper.run(0) == token  # interrupted, not restarted; the lane is free again
    assert len(direct_calls) == before + 1


@pytest.mark.usefixtures("interruptible")
def test_interrupting_a_run_while_its_large_argument_is_written(unique: Unique) -> None:
    # Wherever the interrupt lands (pickling, writing 100 MB, waiting), the call is cancelled
    # and the function keeps working: a write cut midway ends that worker, which is replaced.
    import numpy as np

    @sieve.function(name=unique("total"))
    def total(values: Any) -> float:
        return float(values.sum())

    assert total.run(np.ones(4)) == 4.0
    big = np.ones(100 * 1024 * 1024 // 8)
    for delay in (0.001, 0.01, 0.03):
        call_interrupted(delay, lambda: total.run(big))
        assert total.run(np.ones(3)) == 3.0


def test_a_bounded_run_hands_a_slow_call_on_and_queues_a_slow_function(
    unique: Unique, tmp_path: Path, direct_calls: list[str]
) -> None:
    # A server's event loop waits on a direct call for `wait` seconds at most: a call still
    # running then settles in the background, and once the function's calls are known to take
    # longer than that, its calls are queued instead (the loop never waits on them).
    @sieve.function(name=unique("held"))
    def held(flag: str, seconds: float) -> str:
        while flag and not Path(flag).exists():
            time.sleep(0.01)
        time.sleep(seconds)
        return flag

    name = held.name
    manager = get_manager()
    assert held.run("", 0) == ""
    wait_for(lambda: held.workers[0]["inflight"] == 0)
    flag = tmp_path / "go"
    late = threading.Timer(60, flag.touch)  # (were `wait` ignored: a failure, not a hang)
    late.start()
    try:
        future = manager.run(name, (str(flag), 0), {}, wait=0.01)
        assert not future.done()  # it waits for the flag, which only this test makes
        flag.touch()
    finally:
        late.cancel()
    assert future.result(timeout=60) == str(flag)
    assert future.job_id in direct_calls  # settled by the helper that read its outcome
    wait_for(lambda: held.workers[0]["inflight"] == 0)
    assert manager.run(name, ("", 0), {}, wait=10).result() == ""  # the lane was handed back
    assert len(direct_calls) == 2

    for _ in range(3):
        held.run("", 0.2)  # calls of this function now take longer than 0.01 s
    wait_for(lambda: held.workers[0]["inflight"] == 0)
    before = len(direct_calls)
    queued = manager.run(name, ("", 0), {}, wait=0.01)
    assert queued.result(timeout=60) == ""
    assert len(direct_calls) == before  # not a direct call
    assert held.run("", 0) == ""  # while an unbounded .run() still is one
    assert len(direct_calls) == before + 1
