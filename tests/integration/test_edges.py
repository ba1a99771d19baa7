"""Edges of the SDK with real local workers: bad input, big payloads, progress and the manager's
event stream. (Cancellation: test_cancellation.py.)"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import types
from typing import Any

import numpy as np
import pytest
from support import Unique, wait_for

import sieve_jupyter as sieve
from sieve_jupyter.manager import Event, JobStatus, get_manager


def job_ids() -> list[str]:
    return [f.job_id for f in get_manager().jobs()]


# -- bad input, caught before anything is pushed -----------------------------------------------


def test_wrong_arguments_raise_type_error_and_queue_nothing(unique: Unique) -> None:
    @sieve.function(name=unique("two-args"))
    def two_args(a: int, b: int = 2) -> int:
        return a + b

    before = job_ids()
    with pytest.raises(TypeError, match="too many positional arguments"):
        two_args.push(1, 2, 3)
    with pytest.raises(TypeError, match="unexpected keyword argument 'c'"):
        two_args.push(1, c=3)
    with pytest.raises(TypeError, match="missing a required argument: 'a'"):
        two_args.run()
    assert job_ids() == before
    assert two_args.workers == []  # not even a worker was started for them
    assert two_args.run(1, b=5) == 6


def test_model_arguments_are_checked_against_predict(unique: Unique) -> None:
    @sieve.Model(name=unique("predictor"))
    class Predictor:
        def __predict__(self, text: str) -> str:
            return text.upper()

    before = job_ids()
    with pytest.raises(TypeError, match="Predictor|predictor"):
        Predictor.push("a", "b")
    assert job_ids() == before
    assert Predictor.run(text="ok") == "OK"


def test_code_that_cannot_travel_says_why_when_it_first_runs(unique: Unique) -> None:
    lock = threading.Lock()

    @sieve.function(name=unique("holds-a-lock"))
    def holds(x: int) -> int:
        with lock:
            return x

    for call in (lambda: holds.run(1), lambda: holds.push(1)):
        with pytest.raises(sieve.SieveError, match="its code cannot be sent to a worker") as caught:
            call()
        assert "lock" in str(caught.value) and "Fix: create what it uses" in str(caught.value)
    assert holds.workers == []


def test_unpicklable_argument_fails_its_job_and_the_worker_stays_usable(unique: Unique) -> None:
    @sieve.function(name=unique("echo-pid"))
    def echo_pid(value: Any) -> tuple[Any, int]:
        return value, os.getpid()

    lock = threading.Lock()
    # First job, before the worker is even ready: it is sent later, by the pool's sender.
    early = echo_pid.push(lock)
    with pytest.raises(TypeError, match="cannot be sent to the worker") as caught:
        early.result(timeout=60)
    assert "lock" in str(caught.value) and "Fix: pass picklable values" in str(caught.value)
    assert early.status is JobStatus.ERROR
    _, pid = echo_pid.run(1)

    # Among good jobs pushed in one burst, only the bad one fails, on the same warm worker.
    futures = [echo_pid.push(v) for v in (1, 2, lock, 4, 5)]
    outcomes = [f.exception(timeout=60) for f in futures]
    assert isinstance(outcomes[2], TypeError)
    assert [f.result() for i, f in enumerate(futures) if i != 2] == [
        (1, pid),
        (2, pid),
        (4, pid),
        (5, pid),
    ]
    assert echo_pid.run("after") == ("after", pid)


def test_argument_the_worker_cannot_rebuild_fails_its_job_not_the_worker(
    unique: Unique, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A type from a module only the kernel has: it pickles by reference here, and the worker
    # cannot import it. Only the jobs of that call fail; the warm worker carries on.
    module = types.ModuleType("only_in_the_kernel")
    exec("class Thing:\n    pass", module.__dict__)  # noqa: S102
    monkeypatch.setitem(sys.modules, "only_in_the_kernel", module)

    @sieve.Model(name=unique("rebuilder"))
    class Keeper:
        def __setup__(self) -> None:
            self.pid = os.getpid()

        def __predict__(self, value: Any) -> int:
            return self.pid

    pid = Keeper.run(1)
    failed = Keeper.push(module.Thing())
    with pytest.raises(TypeError, match="cannot be rebuilt in the worker") as info:
        failed.result(timeout=60)
    assert "only_in_the_kernel" in str(info.value)
    assert Keeper.run(2) == pid  # same warm worker, no restart


def test_unpicklable_return_value_fails_its_job_and_keeps_the_warm_worker(
    unique: Unique,
) -> None:
    @sieve.Model(name=unique("leaky"))
    class Leaky:
        def __setup__(self) -> None:
            self.setups = getattr(self, "setups", 0) + 1

        def __predict__(self, kind: str) -> Any:
            if kind == "lock":
                return threading.Lock()
            return os.getpid(), self.setups

    pid, setups = Leaky.run("ok")
    with pytest.raises(TypeError, match="return value cannot be sent back") as caught:
        Leaky.run("lock")
    assert "Fix: return picklable values" in str(caught.value)
    # results batched with the bad one still arrive; no crash, no second __setup__
    futures = [Leaky.push(k) for k in ("ok", "lock", "ok", "ok")]
    assert isinstance(futures[1].exception(timeout=60), TypeError)
    assert [futures[i].result() for i in (0, 2, 3)] == [(pid, setups)] * 3
    assert Leaky.run("ok") == (pid, setups)


def test_unpicklable_streamed_output_fails_its_job(unique: Unique) -> None:
    @sieve.function(name=unique("leaky-stream"))
    def leaky_stream(n: int) -> Any:
        for i in range(n):
            yield threading.Lock() if i == 1 else i

    future = leaky_stream.push(3)
    with pytest.raises(TypeError, match="streamed output cannot be sent back"):
        future.result(timeout=60)
    assert future.outputs[:1] == [0]
    assert list(leaky_stream.run(1)) == [0]


def test_unknown_function_names_list_the_known_ones(unique: Unique) -> None:
    name = unique("known")

    @sieve.function(name=name)
    def known() -> None:
        pass

    user = sieve.config.user
    assert sieve.function.get(f"{user}/{name}").name == name
    assert sieve.function.get(name).name == name
    for missing in ("nobody/x", "unknown", f"someone-else/{name}"):
        with pytest.raises(sieve.FunctionNotFoundError) as caught:
            sieve.function.get(missing)
        message = str(caught.value)
        assert repr(missing) in message
        assert f"{user}/{name}" in message  # the known ones are listed
    assert issubclass(sieve.FunctionNotFoundError, LookupError)


def test_bad_declarations_fail_at_decoration_and_register_nothing(unique: Unique) -> None:
    before = {r.name for r in get_manager().records()}

    with pytest.raises(sieve.SpecError) as caught:

        @sieve.function(name="alice/slashed")
        def slashed() -> None:
            pass

    assert caught.value.field == "name"

    with pytest.raises(sieve.SpecError, match="__predict__"):

        @sieve.Model(name=unique("no-predict"))
        class NoPredict:
            def __setup__(self) -> None:
                pass

    with pytest.raises(sieve.SpecError, match="__setup__"):

        @sieve.Model(name=unique("setup-args"))
        class SetupArgs:
            def __setup__(self, weights: str) -> None:
                pass

            def __predict__(self, x: int) -> int:
                return x

    with pytest.raises(sieve.SpecError) as caught:

        @sieve.function(name=unique("split-nine"), gpu=sieve.gpu.T4(split=9))
        def split_nine() -> None:
            pass

    assert caught.value.field == "gpu.split" and "sieve.gpu.T4(split=2)" in str(caught.value)
    assert {r.name for r in get_manager().records()} == before


# -- big payloads ------------------------------------------------------------------------------


def test_hundred_megabyte_array_goes_in_and_comes_back(unique: Unique) -> None:
    @sieve.function(name=unique("big-arrays"))
    def big_arrays(data: np.ndarray | None, n: int) -> Any:
        if data is not None:
            return float(data.sum()), data.shape, str(data.dtype), int(data[-1])
        return np.arange(n, dtype=np.int64)

    n = 100 * 1024 * 1024 // 8  # 100 MiB of int64
    data = np.arange(n, dtype=np.int64)
    total, shape, dtype, last = big_arrays.run(data, 0)
    assert total == float(data.sum())
    assert (shape, dtype, last) == ((n,), "int64", n - 1)

    back = big_arrays.run(None, n)
    assert back.nbytes == 100 * 1024 * 1024
    assert np.array_equal(back, data)


# -- progress and events -----------------------------------------------------------------------


def test_progress_and_the_event_stream(unique: Unique) -> None:
    events: list[Event] = []
    unsubscribe = get_manager().events.subscribe(events.append)
    try:
        name = unique("halfway")

        @sieve.function(name=name)
        def halfway(x: int) -> int:
            print(f"working on {x}")
            sieve.report_progress(0.5, "half")
            return x * 2

        future = halfway.push(21)
        assert future.result(timeout=60) == 42
        assert future.progress == (0.5, "half")
        job = future.job_id
        wait_for(
            lambda: any(
                e.kind == "job" and e.data["job_id"] == job and e.data["status"] == "finished"
                for e in events
            )
        )
    finally:
        unsubscribe()

    snapshot = list(events)
    for event in snapshot:
        json.dumps(event.data)  # every payload is JSON-able, for the comm channel
    functions = [e.data for e in snapshot if e.kind == "function" and e.data["name"] == name]
    assert functions, "registering and starting workers publish the function"
    assert {"name", "kind", "backend", "state", "workers", "spec_hash"} <= set(functions[0])
    assert functions[-1]["state"] == "warm" and functions[-1]["workers"][0]["state"] == "ready"

    jobs = [e.data for e in snapshot if e.kind == "job" and e.data["job_id"] == job]
    assert jobs[0]["status"] == "queued" and jobs[-1]["status"] == "finished"
    assert [0.5, "half"] in [j["progress"] for j in jobs]
    logs = [e.data for e in snapshot if e.kind == "log" and e.data["job_id"] == job]
    assert "working on 21" in "".join(d["text"] for d in logs)
    assert all(d["stream"] == "stdout" for d in logs)

    # after unsubscribing nothing more arrives
    count = len(events)
    halfway.run(1)
    assert len(events) == count


def test_job_events_arrive_in_status_order_on_a_warm_worker(unique: Unique) -> None:
    @sieve.function(name=unique("quick"))
    def quick(x: int) -> int:
        return x

    quick.run(0)  # warm: the next calls are written inline by the pushing thread
    events: list[Event] = []
    unsubscribe = get_manager().events.subscribe(events.append)
    try:
        futures = [quick.push(i) for i in range(50)]
        assert [f.result(timeout=60) for f in futures] == list(range(50))
        wanted = {f.job_id for f in futures}
        wait_for(
            lambda: (
                {
                    e.data["job_id"]
                    for e in list(events)
                    if e.kind == "job" and e.data["status"] == "finished"
                }
                >= wanted
            )
        )
    finally:
        unsubscribe()
    order = ["queued", "processing", "finished"]
    for future in futures:
        seen = [
            e.data["status"]
            for e in events
            if e.kind == "job" and e.data["job_id"] == future.job_id
        ]
        # a listener (the side panel) keeps the last status it got: it must be the final one
        assert seen[0] == "queued" and seen[-1] == "finished", (future.job_id, seen)
        assert [order.index(s) for s in seen] == sorted(order.index(s) for s in seen)


def test_report_progress_outside_a_worker_is_a_no_op_and_checks_its_range() -> None:
    sieve.report_progress(0.3, "plain call")
    with pytest.raises(ValueError, match="0.0..1.0"):
        sieve.report_progress(1.5)


def test_cancelling_publishes_the_new_status(unique: Unique, tmp_path: Any) -> None:
    # Listeners (the side panel, progress widgets) learn of a cancel made from code.
    events: list[dict[str, Any]] = []
    unsubscribe = get_manager().events.subscribe(lambda e: events.append(e.data), kinds={"job"})
    try:
        started = tmp_path / "started"

        @sieve.function(name=unique("cancellable"))
        def slow(marker: str) -> None:
            open(marker, "w").close()
            time.sleep(30)

        running = slow.push(str(started))
        queued = slow.push(str(tmp_path / "never"))
        wait_for(started.exists)
        assert queued.cancel() and running.cancel()
        for future in (queued, running):
            wait_for(
                lambda f=future: any(  # type: ignore[misc]
                    e["job_id"] == f.job_id and e["status"] == "cancelled" for e in events
                )
            )
    finally:
        unsubscribe()


def test_a_function_calling_itself_from_its_only_worker_fails_clearly(unique: Unique) -> None:
    name = unique("recursive")

    @sieve.function(name=name)
    def countdown(n: int) -> int:
        return 0 if n == 0 else 1 + sieve.function.get(name).run(n - 1)

    with pytest.raises(sieve.SieveError, match="calls itself .* would wait forever"):
        countdown.run(2)
    assert countdown.run(0) == 0  # the worker is still serving
