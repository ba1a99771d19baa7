"""`WorkerJobs`: which job a worker is running, as its exit would blame it.

A worker that dies takes the blame to the job it was running; the others go back to the queue.
The running job is never told by the worker: it is the oldest written and unfinished one.
"""

from __future__ import annotations

from typing import Any

from sieve_jupyter.manager import JobFuture
from sieve_jupyter.manager._worker_jobs import WorkerJobs


def _job(n: int) -> JobFuture[Any]:
    return JobFuture(f"f-{n}", "f", (n,), {})


def test_a_worker_whose_direct_call_ended_runs_nothing() -> None:
    jobs = WorkerJobs("w1")
    call = _job(1)
    jobs.claim_direct(call)
    assert jobs.finish("f-1") is call
    assert jobs.idle and jobs.direct is None
    assert jobs.settle_exit(blame_running=True) == (None, [])


def test_the_running_job_is_the_oldest_written_and_unfinished() -> None:
    jobs = WorkerJobs("w1")
    first, second, third = _job(1), _job(2), _job(3)
    for job in (first, second, third):
        jobs.assign(job)
    jobs.take_unwritten()  # (all three written)
    assert jobs.start_next() is first
    jobs.finish("f-1")
    assert jobs.start_next() is second
    crashed, others = jobs.settle_exit(blame_running=True)
    assert crashed is second and others == [third]


def test_the_last_job_finished_leaves_nothing_to_blame() -> None:
    jobs = WorkerJobs("w1")
    only = _job(1)
    jobs.assign(only)
    jobs.take_unwritten()
    assert jobs.start_next() is only
    jobs.finish("f-1")  # (no start_next: nothing is left to run)
    assert jobs.settle_exit(blame_running=True) == (None, [])
