"""A burst of pushes reaches a Ray worker in groups of calls, one actor call each
(`RayLink.send_calls`, `SieveWorker.calls`); each job still keeps its own outcome, in order.
(The shared behaviour and batch tests run bursts on Ray too: order, statuses, printed text,
cancels of held jobs, crashes in the middle of a group, a long job that shows as running.)"""

from __future__ import annotations

import threading

import pytest
from support import Unique

import sieve_jupyter as sieve


def test_a_burst_goes_in_groups_and_each_job_keeps_its_outcome(unique: Unique) -> None:
    @sieve.function(name=unique("grouped"), backend="ray")
    def which(i: int) -> tuple[int, str]:
        import ray

        return i, ray.get_runtime_context().get_task_id()

    which.run(-1)
    futures = [which.push(i) for i in range(500)]
    results = [f.result(timeout=120) for f in futures]
    assert [i for i, _ in results] == list(range(500))
    # jobs of one group run inside one actor call: far fewer Ray tasks than jobs
    assert len({task for _, task in results}) < 250


def test_a_result_that_cannot_be_pickled_fails_only_its_job(unique: Unique) -> None:
    @sieve.function(name=unique("unpicklable"), backend="ray")
    def make(i: int) -> object:
        return threading.Lock() if i == 37 else i

    make.run(0)
    futures = [make.push(i) for i in range(100)]
    for i, future in enumerate(futures):
        if i == 37:
            with pytest.raises(TypeError, match=r"job .*: Ray could not run the call"):
                future.result(timeout=120)
        else:
            assert future.result(timeout=120) == i


def test_restart_on_error_in_a_burst_runs_the_rest_on_a_fresh_worker(unique: Unique) -> None:
    @sieve.Model(name=unique("restarts"), backend="ray", restart_on_error=True)
    class Restarts:
        def __setup__(self) -> None:
            import os

            self.setup_id = os.urandom(4).hex()

        def __predict__(self, i: int) -> str:
            if i == 20:
                raise ValueError("boom")
            return self.setup_id

    Restarts.run(0)
    futures = [Restarts.push(i) for i in range(60)]
    with pytest.raises(ValueError, match="boom"):
        futures[20].result(timeout=120)
    before = {futures[i].result(timeout=120) for i in range(20)}
    after = {futures[i].result(timeout=120) for i in range(21, 60)}
    assert len(before) == 1 and len(after) == 1 and before != after  # a fresh __setup__


def test_large_results_in_a_burst_arrive_whole(unique: Unique) -> None:
    @sieve.function(name=unique("large"), backend="ray")
    def large(i: int) -> bytes:
        return bytes([i % 256]) * (2 << 20)

    large.run(0)
    for _ in range(2):  # (the second burst goes call by call: the first brought large results)
        futures = [large.push(i) for i in range(20)]
        for i, future in enumerate(futures):
            value = future.result(timeout=120)
            assert len(value) == 2 << 20 and value[:1] == bytes([i % 256])
