"""`%%sieve_model --backend ray` in a real kernel, on the ray tier's two-node cluster.

The kernel is started after the cluster (the `ray_cluster` fixture puts its address and token
in this process's environment, which the kernel inherits), so the kernel's Ray connects to it
the way a user's does: through `RAY_ADDRESS`. Marked `ray` as well as `kernel` (its folder):
it runs with the ray tier.
"""

from __future__ import annotations

import json
import os

import pytest
from _kernel import KernelSession
from support import wait_for

pytestmark = pytest.mark.ray

CELL = """%%sieve_model --name raycounter --backend ray
import os
class RayCounter:
    def __setup__(self):
        self.setup_id = os.urandom(4).hex()
    def __predict__(self, x: int) -> str:
        print("predicting", x)
        return {version!r} + ":" + self.setup_id + ":" + str(os.getpid()) + ":" + str(x)
"""

WORKERS = """import json
from sieve_jupyter.manager import get_manager
(record,) = [r for r in get_manager().functions() if r["name"] == "raycounter"]
print(json.dumps(record["workers"]))
"""


def test_sieve_model_on_ray_runs_swaps_and_stops(
    ray_cluster: object, kernel_session: KernelSession
) -> None:
    kernel_session.ok("%load_ext sieve_jupyter")
    registered = kernel_session.ok(CELL.format(version="v1"))
    assert "raycounter" in registered.stream()
    called = kernel_session.ok("print(RayCounter.run(1))", timeout=300)
    version, setup_id, pid, x = called.stream().strip().splitlines()[-1].split(":")
    assert (version, x) == ("v1", "1")
    assert "predicting 1" in called.stream()  # the actor's output reaches its cell
    kernel_pid = int(kernel_session.ok("import os; print(os.getpid())").stream())
    assert int(pid) != kernel_pid  # it ran in a Ray actor, not in the kernel
    (worker,) = json.loads(kernel_session.ok(WORKERS).stream())
    assert worker["node"] and worker["actor_id"]  # the side panel's view: where it runs
    assert worker["pid"] == int(pid)

    # Rerunning the cell with new code swaps it into the warm actor: __setup__ is kept.
    rerun = kernel_session.ok(CELL.format(version="v2"))
    assert "the new code now answers calls on 1 warm worker (raycounter-w1)" in rerun.stream()
    assert "__setup__ kept" in rerun.stream()
    swapped = kernel_session.ok("print(RayCounter.run(2))").stream().strip().splitlines()[-1]
    assert swapped == f"v2:{setup_id}:{pid}:2"

    # Stopping it ends the actor's process, and says nothing of Ray's into the cell.
    stopped = kernel_session.ok("%sieve stop raycounter")
    assert "(raylet)" not in stopped.text
    wait_for(lambda: not os.path.exists(f"/proc/{pid}"), timeout=30)  # (both nodes are here)
    state = kernel_session.ok(
        "from sieve_jupyter.manager import get_manager\n"
        "print([r['state'] for r in get_manager().functions() if r['name'] == 'raycounter'])"
    )
    assert state.stream().strip() == "['stopped']"
    # A new call starts a fresh actor: __setup__ runs again.
    again = kernel_session.ok("print(RayCounter.run(3))", timeout=300).stream()
    version, new_setup, new_pid, _ = again.strip().splitlines()[-1].split(":")
    assert version == "v2" and new_setup != setup_id and new_pid != pid
