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
    # (imported here: Ray is imported only once the tier's cluster has set its token)
    from sieve_jupyter.backends._ray_link import _PING_EVERY

    @sieve.function(name=unique("behind"), backend="ray")
    def nap(seconds: float) -> float:
        time.sleep(seconds)
        return seconds

    assert nap.run(0.0) == 0.0  # warm, and idle again
    pool = get_manager().record(nap.name).pool
    assert pool is not None
    # Claimed by its caller, and longer than the consumer's idle wait between pings, so the
    # consumer is surely waiting for it when it is answered.
    long = _PING_EVERY + 1.0
    thread, outcome = in_thread(lambda: nap.run(long))
    wait_for(lambda: any(w["inflight"] for w in pool.describe()), timeout=60)
    pushed = [nap.push(0.0) for _ in range(3)]  # sent behind it, for the consumer to read
    thread.join(120)
    assert outcome == [long]
    assert [f.result(timeout=120) for f in pushed] == [0.0, 0.0, 0.0]
    assert nap.run(0.0) == 0.0  # and a waited call again after them
