"""What every backend guarantees, tested with real worker processes (and containers).

Each test runs once per backend in `BEHAVIOUR_BACKENDS` (tests/conftest.py). Functions are
defined inside the tests, so they travel to the workers by value, as notebook code does.
"""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import Unique, wait_for

import sieve_jupyter as sieve
from sieve_jupyter.manager import JobStatus


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory both the test and its workers see (containers get it mounted at the same
    path by the docker tier's settings; Ray workers run on this machine); removed after the
    test."""
    root = Path(os.environ.get("SIEVE_TEST_SHARED_DIR", tempfile.gettempdir()))
    folder = Path(tempfile.mkdtemp(prefix="sieve-test-", dir=root))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_run_push_and_futures(backend: str, unique: Unique) -> None:
    @sieve.function(name=unique("multiplier"), backend=backend)
    def multiply(x1: int, x2: int) -> int:
        return x1 * x2

    assert multiply.run(2, 3) == 6
    jobs = [multiply.push(2, x) for x in [4, 8, 15, 16, 23, 42]]
    assert all(isinstance(j, concurrent.futures.Future) for j in jobs)
    done = [f.result() for f in concurrent.futures.as_completed(jobs, timeout=60)]
    assert sorted(done) == [8, 16, 30, 32, 46, 84]
    concurrent.futures.wait(jobs)
    seen: list[str] = []
    extra = multiply.push(3, 3)
    extra.add_done_callback(lambda f: seen.append(f.job_id))
    assert extra.result(timeout=30) == 9
    wait_for(lambda: seen == [extra.job_id])
    assert extra.status is JobStatus.FINISHED
    assert extra.started_at is not None and extra.finished_at is not None
    assert extra.duration is not None and extra.duration >= 0
    assert len({j.job_id for j in jobs}) == len(jobs)
    # a plain call stays in-process
    assert multiply(2, 5) == 10


def test_model_setup_runs_once_per_worker(backend: str, unique: Unique) -> None:
    @sieve.Model(name=unique("adder"), backend=backend)
    class Adder:
        def __setup__(self) -> None:
            print("setting up!")
            self.offset = 100
            self.calls = 0

        def __predict__(self, x1: int, x2: int) -> dict[str, int]:
            self.calls += 1
            return {"sum": x1 + x2 + self.offset, "calls": self.calls, "pid": os.getpid()}

    first = Adder.push(1, 2)
    results = [Adder.run(1, i) for i in range(5)]
    assert first.result()["sum"] == 103
    assert [r["calls"] for r in results] == [2, 3, 4, 5, 6]
    assert len({r["pid"] for r in results}) == 1
    assert "setting up!" in first.stdout  # setup output lands with the job that waited for it
    local = Adder()  # a local instance: __setup__ ran in this process
    assert local.__predict__(1, 2)["sum"] == 103
    assert local.__predict__(1, 2)["pid"] == os.getpid()


def test_logs_are_captured_per_job(backend: str, unique: Unique) -> None:
    import sys

    @sieve.function(name=unique("talker"), backend=backend)
    def talk(word: str) -> str:
        print(f"hello {word}")
        print("to stderr", file=sys.stderr)
        return word

    futures = [talk.push(w) for w in ("a", "b", "c")]
    for word, future in zip(("a", "b", "c"), futures, strict=True):
        assert future.result(timeout=30) == word
        assert future.stdout == f"hello {word}\n"
        assert future.stderr == "to stderr\n"


def test_generator_streams_outputs_as_produced(
    backend: str, unique: Unique, shared_dir: Path
) -> None:
    gate = shared_dir / "gate"

    @sieve.function(name=unique("counter"), backend=backend)
    def count(n: int):  # type: ignore[no-untyped-def]
        yield 0
        # the second output only comes after the test saw the first one
        deadline = time.time() + 60
        while not gate.exists() and time.time() < deadline:
            time.sleep(0.01)
        yield from range(1, n)

    stream = count.run(4)
    assert next(stream) == 0
    gate.touch()
    assert list(stream) == [1, 2, 3]
    future = count.push(3)
    assert future.result(timeout=30) == [0, 1, 2]
    assert future.outputs == [0, 1, 2]


def test_map_keeps_input_order(backend: str, unique: Unique) -> None:
    @sieve.function(name=unique("slow-square"), backend=backend, workers=2)
    def square(x: int) -> int:
        time.sleep(0.05 * (5 - x))
        return x * x

    assert list(square.map(range(5))) == [0, 1, 4, 9, 16]
    assert sorted(square.map(range(5), order_outputs=False)) == [0, 1, 4, 9, 16]


def test_user_exception_keeps_type_and_remote_traceback(backend: str, unique: Unique) -> None:
    @sieve.function(name=unique("divider"), backend=backend)
    def divide(a: int, b: int) -> float:
        return a / b

    with pytest.raises(ZeroDivisionError) as info:
        divide.run(1, 0)
    remote = info.value.remote_traceback  # type: ignore[attr-defined]
    assert "return a / b" in remote and "ZeroDivisionError" in remote
    assert isinstance(info.value.__cause__, sieve.RemoteError.__mro__[1]) or info.value.__cause__
    future = divide.push(1, 0)
    assert isinstance(future.exception(timeout=30), ZeroDivisionError)
    assert future.status is JobStatus.ERROR


def test_unpicklable_exception_becomes_remote_error(backend: str, unique: Unique) -> None:
    @sieve.function(name=unique("odd-error"), backend=backend)
    def fail() -> None:
        class Local(Exception):
            def __reduce__(self):  # type: ignore[no-untyped-def]
                raise TypeError("no pickling for me")

        raise Local("bad thing")

    with pytest.raises(sieve.RemoteError) as info:
        fail.run()
    assert info.value.type_name.endswith("Local")
    assert info.value.message == "bad thing"
    assert "raise Local" in info.value.traceback


def test_restart_on_error_controls_warm_state(backend: str, unique: Unique) -> None:
    def make(restart: bool):  # type: ignore[no-untyped-def]
        @sieve.Model(name=unique(f"stateful-{restart}"), backend=backend, restart_on_error=restart)
        class Stateful:
            def __setup__(self) -> None:
                self.setup_id = os.urandom(4).hex()

            def __predict__(self, kind: str) -> str:
                if kind == "error":
                    raise ValueError("boom")
                if kind == "fatal":
                    raise sieve.FatalException("unrecoverable")
                return self.setup_id

        return Stateful

    keeps = make(False)
    before = keeps.run("ok")
    with pytest.raises(ValueError):
        keeps.run("error")
    assert keeps.run("ok") == before  # warm state survived the error
    with pytest.raises(sieve.FatalException):
        keeps.run("fatal")
    assert keeps.run("ok") != before  # FatalException restarts even when False

    restarts = make(True)
    before = restarts.run("ok")
    with pytest.raises(ValueError):
        restarts.run("error")
    assert restarts.run("ok") != before  # a fresh __setup__ ran


@pytest.mark.parametrize("how", ["exit", "segfault"])
def test_worker_crash_fails_only_the_running_job(backend: str, unique: Unique, how: str) -> None:
    @sieve.function(name=unique("crasher"), backend=backend)
    def work(x: int) -> int:
        if x < 0:
            if how == "exit":
                os._exit(17)
            import ctypes

            ctypes.string_at(0)  # segfault
        time.sleep(0.01)
        return x

    assert work.run(1) == 1
    crash = work.push(-1)
    queued = [work.push(i) for i in range(5)]
    with pytest.raises(sieve.WorkerCrashedError, match="died while running"):
        crash.result(timeout=60)
    assert [f.result(timeout=60) for f in queued] == [0, 1, 2, 3, 4]
    assert work.run(7) == 7


def test_cancel_queued_never_runs_and_running_is_interrupted(
    backend: str, unique: Unique, shared_dir: Path
) -> None:
    @sieve.Model(name=unique("sleeper"), backend=backend)
    class Sleeper:
        def __setup__(self) -> None:
            self.setup_id = os.urandom(4).hex()

        def __predict__(self, seconds: float, mark: str) -> str:
            (shared_dir / f"started-{mark}").touch()
            time.sleep(seconds)
            (shared_dir / f"finished-{mark}").touch()
            return self.setup_id

    setup_id = Sleeper.run(0, "warmup")
    running = Sleeper.push(30, "long")
    queued = Sleeper.push(0, "queued")
    wait_for(lambda: (shared_dir / "started-long").exists())
    wait_for(running.running)
    assert queued.status is JobStatus.QUEUED
    assert queued.cancel()
    assert queued.cancelled() and queued.status is JobStatus.CANCELLED
    assert running.cancel()
    with pytest.raises(concurrent.futures.CancelledError):
        running.result(timeout=30)
    # the worker is free again (the sleep was interrupted) and kept its warm state
    assert Sleeper.run(0, "after") == setup_id
    assert not (shared_dir / "finished-long").exists()
    assert not (shared_dir / "started-queued").exists()


def test_chaining_calls_another_function_from_a_worker(backend: str, unique: Unique) -> None:
    @sieve.function(name=unique("inner"), backend=backend)
    def inner(x: int) -> int:
        return x + 1

    inner_name = inner.name

    @sieve.function(name=unique("outer"), backend=backend)
    def outer(x: int) -> list[int]:
        by_handle = inner.run(x)  # a handle captured by value
        by_name = sieve.function.get(inner_name).push(x * 10).result()
        return [by_handle, by_name]

    assert outer.run(1) == [2, 11]


def test_code_travels_with_the_names_it_uses_when_it_first_runs(
    backend: str, unique: Unique
) -> None:
    """As plain Python resolves names when a call runs, not where the function is defined: a
    function calling itself, a helper and another sieve function defined after it, and
    another function or model called directly (a plain call inside this worker, as in the
    notebook: theirs start no workers)."""

    @sieve.function(name=unique("fact"), backend=backend)
    def fact(n: int) -> int:
        return 1 if n <= 1 else n * fact(n - 1)

    @sieve.function(name=unique("quad"), backend=backend)
    def quad(x: int) -> int:
        return double(double(x)) + offset(x) + Scale().__predict__(x)

    @sieve.function(name=unique("double"), backend=backend)
    def double(x: int) -> int:
        return 2 * x

    def offset(x: int) -> int:
        return x + 100

    @sieve.Model(name=unique("scale"), backend=backend)
    class Scale:
        def __setup__(self) -> None:
            self.factor = 1000

        def __predict__(self, x: int) -> int:
            return self.factor * x

    assert fact.run(5) == 120
    assert quad.run(3) == 12 + 103 + 3000
    assert double.workers == [] and Scale.workers == []


def test_env_values_reach_the_worker_and_missing_ones_fail_first(
    backend: str, unique: Unique, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIEVE_TEST_TOKEN", "s3cret-value")
    env = [
        sieve.Env(name="SIEVE_TEST_TOKEN", description="a token"),
        sieve.Env(name="SIEVE_TEST_MODE", default="fast"),
    ]

    @sieve.function(name=unique("reader"), backend=backend, environment_variables=env)
    def read() -> list[str | None]:
        return [os.environ.get("SIEVE_TEST_TOKEN"), os.environ.get("SIEVE_TEST_MODE")]

    assert read.run() == ["s3cret-value", "fast"]
    assert "s3cret-value" not in read.spec.to_json()

    @sieve.function(
        name=unique("needs-env"),
        backend=backend,
        environment_variables=[sieve.Env(name="SIEVE_TEST_MISSING_VAR")],
    )
    def needs() -> None:
        return None

    with pytest.raises(sieve.EnvironmentVariableError, match="SIEVE_TEST_MISSING_VAR") as info:
        needs.push()
    assert "Fix: os.environ['SIEVE_TEST_MISSING_VAR'] = '...' before the call" in str(info.value)
    assert needs.state == "idle"  # nothing was started
