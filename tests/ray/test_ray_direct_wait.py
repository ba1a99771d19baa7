"""A `.run()` that finds its Ray worker idle reads its own answer on the calling thread
(`WorkerLink.settle_here`); the link's consumer thread, which waits meanwhile, must take over
again afterwards: calls pushed behind the `.run()` are delivered, and the idle worker is
pinged again."""

from __future__ import annotations

import time

from support import Unique, in_thread, wait_for

import sieve_jupyter as sieve
from sieve_jupyter.manager import get_manager


def test_pushes_behind_a_waited_run_are_delivered(unique: Unique) -> None:
    @sieve.function(name=unique("behind"), backend="ray")
    def nap(seconds: float) -> float:
        time.sleep(seconds)
        return seconds

    assert nap.run(0.0) == 0.0  # warm, and idle again
    pool = get_manager().record(nap.name).pool
    assert pool is not None
    thread, outcome = in_thread(lambda: nap.run(1.0))  # claimed by its caller
    wait_for(lambda: any(w["inflight"] for w in pool.describe()), timeout=60)
    pushed = [nap.push(0.0) for _ in range(3)]  # sent behind it, for the consumer to read
    thread.join(120)
    assert outcome == [1.0]
    assert [f.result(timeout=120) for f in pushed] == [0.0, 0.0, 0.0]
    assert nap.run(0.0) == 0.0  # and a waited call again after them
