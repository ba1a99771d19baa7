"""The issue's main example: a kernel outside the cluster reaches it through Ray Client,
`sieve.configure(backend="ray", ray_address="ray://head:10001")`.

The tier's head node runs a Ray Client server (`RayCluster.client_port`). A Ray process is
either a driver of the cluster or a Ray Client, not both, and this test process is already a
driver (the behaviour tests' kernel), so the client kernel is a Python process of its own: a
script that runs a model through `ray://127.0.0.1:<port>` — a call, streamed outputs, a cancel
of a running job (the worker stays warm), an error with its remote traceback, a burst whose
grant the kernel reads and removes through the client — and prints what it saw as JSON, for
the assertions here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from support import run_script, script_env

_CLIENT = """
import json, os, time
import sieve_jupyter as sieve

sieve.configure(backend="ray", ray_address=os.environ["SIEVE_TEST_CLIENT_ADDRESS"])
seen = {}

@sieve.Model(name="client-model")
class Model:
    def __setup__(self):
        self.setup_id = os.urandom(4).hex()

    def __predict__(self, x: int) -> str:
        if x < 0:
            raise ValueError(f"negative input {x}")
        if x == 999:
            time.sleep(300)
        print("got", x)
        return f"{self.setup_id}:{os.getpid()}:{x}"

@sieve.function(name="client-stream")
def count(n: int):
    for i in range(n):
        yield i * 10

first = Model.run(1)
seen["first"] = first
job = Model.push(2)
seen["pushed"] = job.result(timeout=120)
seen["pushed_stdout"] = job.stdout
seen["streamed"] = list(count.run(4))

slow = Model.push(999)
deadline = time.monotonic() + 120
while slow.status != "processing" and time.monotonic() < deadline:
    time.sleep(0.05)
seen["slow_status"] = slow.status
slow.cancel()
try:
    slow.result(timeout=120)
except BaseException as exc:
    seen["cancelled_with"] = type(exc).__name__
seen["cancel_status"] = slow.status
seen["after_cancel"] = Model.run(3)

try:
    Model.run(-5)
except ValueError as exc:
    import traceback
    seen["error"] = [type(exc).__name__, str(exc), "".join(traceback.format_exception(exc))]

# A burst: calls sent behind others start under a grant, which the kernel reads through the
# client (after a node is lost), and removes when the worker stops.
from ray.experimental import internal_kv
from sieve_jupyter.manager import get_manager
assert [f.result(timeout=120) for f in [Model.push(i) for i in range(300)]][-1].endswith(":299")
(worker_id,) = [w["id"] for w in get_manager().record("client-model").pool.describe()]
seen["granted"] = get_manager().backend("ray").granted(worker_id)

import ray
seen["client_mode"] = ray.util.client.ray.is_connected()
Model.stop()
count.stop()
def grant_keys():
    keys = internal_kv._internal_kv_list("", namespace="sieve-jupyter-grants")
    return [key.decode() for key in keys if key.decode().endswith("/" + worker_id)]
deadline = time.monotonic() + 60
while grant_keys() and time.monotonic() < deadline:
    time.sleep(0.1)
seen["grant_keys_after_stop"] = grant_keys()
print("RESULT " + json.dumps(seen), flush=True)
"""


def test_a_model_through_ray_client(ray_cluster: object, tmp_path: Path) -> None:
    from ray_tier import RayCluster

    assert isinstance(ray_cluster, RayCluster)
    done = run_script(
        _CLIENT,
        tmp_path / "client_kernel.py",
        timeout=600,
        env=script_env(
            RAY_ADDRESS=None,
            SIEVE_TEST_CLIENT_ADDRESS=f"ray://127.0.0.1:{ray_cluster.client_port}",
        ),
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, done.stdout[-4000:] + done.stderr[-4000:]
    seen = json.loads(lines[-1].removeprefix("RESULT "))

    assert seen["client_mode"] is True  # it really went through Ray Client
    assert seen["granted"] > 0
    assert seen["grant_keys_after_stop"] == []
    setup_id, pid, x = seen["first"].split(":")
    assert x == "1" and int(pid) != os.getpid()
    assert seen["pushed"] == f"{setup_id}:{pid}:2"  # the same warm actor
    assert "got 2" in seen["pushed_stdout"]  # its printed output, captured per job
    assert seen["streamed"] == [0, 10, 20, 30]
    assert seen["slow_status"] == "processing"
    assert seen["cancelled_with"] == "CancelledError"
    assert seen["cancel_status"] == "cancelled"
    assert seen["after_cancel"] == f"{setup_id}:{pid}:3"  # interrupted, and still warm
    name, message, text = seen["error"]
    assert (name, message) == ("ValueError", "negative input -5")
    assert "client_kernel.py" in text
    assert 'raise ValueError(f"negative input {x}")' in text  # the remote line, quoted
