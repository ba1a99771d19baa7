"""Ray workers do not outlive what owns them: stopping a function ends its actors' processes,
and a kernel killed outright takes its actors along (they belong to its Ray job: nothing is
detached). Both nodes of the tier run on this machine, so an actor's process is checked by
its pid."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from support import Unique, script_env, wait_for

import sieve_jupyter as sieve
from sieve_jupyter.manager import get_manager


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_stopping_a_function_ends_its_actors(unique: Unique) -> None:
    @sieve.function(name=unique("stopped"), backend="ray", workers=2)
    def where() -> int:
        return os.getpid()

    assert where.run() > 0
    pool = get_manager().record(where.name).pool
    assert pool is not None
    wait_for(lambda: len(pool.live_workers()) == 2, timeout=120)
    pids = [w["pid"] for w in pool.describe()]
    assert len(set(pids)) == 2 and all(_alive(pid) for pid in pids)
    get_manager().stop(where.name)
    wait_for(lambda: not any(_alive(pid) for pid in pids), timeout=60)


_KERNEL = """
import os, time
import sieve_jupyter as sieve

@sieve.function(name="orphan-check", backend="ray")
def where() -> int:
    return os.getpid()

print(where.run(), flush=True)
time.sleep(600)
"""


def test_a_killed_kernels_actors_do_not_outlive_it() -> None:
    # (the session's fixture put the cluster's address and token in this environment)
    kernel = subprocess.Popen(
        [sys.executable, "-c", _KERNEL],
        env=script_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert kernel.stdout is not None
        line = kernel.stdout.readline()
        assert line.strip().isdigit(), f"the kernel printed {line!r}"
        actor = int(line)
        assert _alive(actor)
    finally:
        kernel.kill()
        kernel.wait()
        if kernel.stdout is not None:
            kernel.stdout.close()
    wait_for(lambda: not _alive(actor), timeout=120)
