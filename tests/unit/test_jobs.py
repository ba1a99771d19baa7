"""`JobFuture` is a real `concurrent.futures.Future`, with a leaner condition.

A kernel keeps thousands of finished jobs, and every object each one holds is walked by every
full pass of the garbage collector (manager/_jobs.py, `_JobCondition`). These tests pin that
the future still behaves as the standard library's across threads, and what a finished job
costs the collector.
"""

from __future__ import annotations

import concurrent.futures
import gc
import sys
import threading
import time
from typing import Any

import pytest

from sieve_jupyter.manager import JobFuture


def _job(n: int = 0) -> JobFuture[Any]:
    return JobFuture(f"f-{n}", "f", (n,), {}, on_cancelled=lambda _: None)


def test_it_has_all_the_state_a_plain_future_has() -> None:
    # JobFuture sets Future's state itself (to give it the leaner condition), or leaves it to a
    # class default: a Python release that adds state to Future.__init__ must show up here, not
    # as a crash later.
    job = _job()
    assert [name for name in vars(concurrent.futures.Future()) if not hasattr(job, name)] == []


def test_result_waits_for_another_thread() -> None:
    future = _job()
    threading.Timer(0.05, lambda: future._resolve(7)).start()
    assert future.result(timeout=10) == 7
    with pytest.raises(concurrent.futures.TimeoutError):
        _job().result(timeout=0.01)


def test_as_completed_and_wait_see_jobs_finish_on_other_threads() -> None:
    futures = [_job(n) for n in range(20)]

    def finish() -> None:
        for n, future in enumerate(reversed(futures)):
            future._set_started("w1")
            future._resolve(n)
            time.sleep(0.001)

    threading.Thread(target=finish).start()
    completed = list(concurrent.futures.as_completed(futures, timeout=10))
    assert len(completed) == 20 and set(completed) == set(futures)
    done, not_done = concurrent.futures.wait(futures, timeout=10)
    assert len(done) == 20 and not not_done
    assert sorted(f.result() for f in futures) == list(range(20))


def test_cancel_wakes_a_waiter_and_runs_callbacks() -> None:
    future = _job()
    called: list[str] = []
    future.add_done_callback(lambda f: called.append(f"{f.done()}"))
    threading.Timer(0.05, future.cancel).start()
    done, _ = concurrent.futures.wait([future], timeout=10)
    assert done == {future} and future.cancelled()
    assert called == ["True"]  # (once, done)
    assert future.cancel()  # (again: still cancelled)


def test_a_finished_job_holds_few_objects_for_the_collector() -> None:
    gc.collect()
    before = len(gc.get_objects())
    futures = [_job(n) for n in range(3000)]
    for future in futures:
        future._set_started("w1")
        future._resolve(None)
    gc.collect()
    per_job = (len(gc.get_objects()) - before) / len(futures)
    # The future and its attributes' dict, its condition with the condition's lock, and the
    # future's list of waiters: 5 (with a standard Condition, which holds five bound methods of
    # its lock and a queue of waiters, and a list of done callbacks, 12). Python 3.10 tracks
    # one more: an instance's attributes there are always a dict of their own.
    assert per_job < (6 if sys.version_info >= (3, 11) else 7), per_job


class _Tracker:
    def on_done(self, future: concurrent.futures.Future[Any]) -> None:
        self.seen = future


def test_a_finished_job_lets_go_of_its_done_callbacks_once_they_ran() -> None:
    import weakref

    for end in ("result", "cancel"):
        future = _job()
        tracker = _Tracker()
        future.add_done_callback(tracker.on_done)  # (as a progress widget's tracker does)
        if end == "result":
            future._resolve(1)
        else:
            future.cancel()
        assert tracker.seen is future  # it ran
        alive = weakref.ref(tracker)
        del tracker
        gc.collect()
        assert alive() is None, f"a job that ended by {end} keeps its callback's object alive"
        late: list[Any] = []
        future.add_done_callback(late.append)  # (added after the end: called at once)
        assert late == [future]


@pytest.mark.parametrize("end", ["pending", "running", "result", "error", "cancelled"])
def test_done_cancelled_and_exception_answer_as_a_plain_future_does(end: str) -> None:
    # (JobFuture reads its state without the lock: the answers must be Future's own)
    job, plain = _job(), concurrent.futures.Future[Any]()
    error = ValueError("bad")
    if end != "pending":
        assert job._set_started("w0")
    if end in ("running", "result", "error"):
        assert plain.set_running_or_notify_cancel()
    if end == "result":
        job._resolve(7)
        plain.set_result(7)
    elif end == "error":
        job._resolve(exception=error)
        plain.set_exception(error)
    elif end == "cancelled":
        job._mark_cancelled()  # (a running job can be; a running plain Future cannot)
        plain.cancel()
    assert (job.done(), job.cancelled()) == (plain.done(), plain.cancelled())
    if end in ("result", "error"):
        assert job.exception() is plain.exception()
        assert job.exception(timeout=0) is plain.exception(timeout=0)
    elif end == "cancelled":
        with pytest.raises(concurrent.futures.CancelledError):
            job.exception()
    else:
        with pytest.raises(concurrent.futures.TimeoutError):  # (3.10: not the builtin)
            job.exception(timeout=0)


@pytest.mark.parametrize("end", ["result", "error", "cancelled"])
def test_an_ended_job_refuses_to_start_or_end_again(end: str) -> None:
    # (JobFuture marks a job running and sets its result itself, without Future's methods:
    # the refusals must be Future's own)
    job, plain = _job(), concurrent.futures.Future[Any]()
    if end == "result":
        job._resolve(1)
        plain.set_result(1)
    elif end == "error":
        job._resolve(exception=ValueError("bad"))
        plain.set_exception(ValueError("bad"))
    else:
        job.cancel()
        plain.cancel()
        plain.set_running_or_notify_cancel()  # (notified: what JobFuture's cancel does at once)
    status = {"result": "finished", "error": "error", "cancelled": "cancelled"}[end]
    assert job._set_started("w1") is False and job.status.value == status
    for settle in (lambda f: f.set_result(2), lambda f: f.set_exception(ValueError("again"))):
        with pytest.raises(concurrent.futures.InvalidStateError):
            settle(plain)
        with pytest.raises(concurrent.futures.InvalidStateError):
            settle(job)
    assert job._resolve(3) is False
    if end == "result":
        assert job.result() == 1


def test_an_event_loop_awaits_a_job_settled_on_another_thread() -> None:
    import asyncio

    job = _job()

    async def main() -> Any:
        threading.Timer(0.02, lambda: (job._set_started("w1"), job._resolve(42))).start()
        return await asyncio.wait_for(job, timeout=10)

    assert asyncio.run(main()) == 42
