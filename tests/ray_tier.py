"""Fixtures of the ray tier: a real two-node Ray cluster on this machine, for the whole session.

Loaded for the whole test suite (tests/conftest.py names this plugin) so the shared behaviour
tests can run on the Ray backend too. The cluster runs in an environment of its own, with Ray and
the package's small core dependencies (`scripts/setup-ray-cluster-env` makes it in
`<virtualenv>/ray-cluster`), as a real cluster does: this package and cloudpickle reach its
workers only the way the backend ships them. (It also keeps Ray's node startup within its own
30-second deadline on a loaded machine: in the test environment, importing Ray costs seconds
more, because jsonschema there compiles an optional IRI grammar at import, and every Ray process
imports it.) `ray start --head` and a second `ray start --address` make two raylets — two nodes
— each with a resource label (`head`, `node2`) that places workers on it; the second node also
declares one fake T4 (`--num-gpus=1`, `accelerator_type:T4`), so GPU requests are placed and
checked by Ray's real scheduler on a machine without GPUs, and runs in a mount namespace of its
own where one folder (`RayCluster.apart`) is not the machine's, so files cross to it as to
another machine (tests/ray/test_ray_files.py). Each node is started in a session of
its own, so its every process (raylet, agents, workers) is found by its process group and ended
by id; nothing else on the machine is touched (`ray stop` would end every Ray process of this
user, other people's clusters too). Settings are small: a 2-core machine is shared.

Ray not installed: the tier skips with the reason printed outside CI, and fails in CI. Ray
installed but its cluster environment missing: it fails, naming the script that makes it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

#: resources each node declares (its label, and node2's fake T4)
NODE_RESOURCES = {
    "head": {"head": 1000},
    "node2": {"node2": 1000, "accelerator_type:T4": 1},
}
#: seconds `ray start` may take on a loaded 2-core machine
_START_TIMEOUT = 240
#: the cluster's own environment (Ray only), made by scripts/setup-test-env
CLUSTER_ENV = Path(os.environ.get("SIEVE_TEST_RAY_CLUSTER_ENV", Path(sys.prefix) / "ray-cluster"))


def _unavailable(reason: str) -> None:
    # In CI the ray tier is part of the contract: a missing Ray is a failure.
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"ray tier cannot run in CI: {reason}", pytrace=False)
    print(f"\nskipping the ray tier: {reason}")
    pytest.skip(reason)


def free_ports(count: int) -> list[int]:
    """`count` distinct ports free now (all held open together, so none repeats)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]


def _group_pids(pgid: int) -> list[int]:
    """The live processes of process group `pgid` (zombies are already gone)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # fields after the name: state, ppid, pgrp, ...
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(entry.name))
    return pids


def _command(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


@dataclass
class RayNode:
    """One `ray start` and every process it started (its process group)."""

    label: str
    pgid: int

    def pids(self) -> list[int]:
        return _group_pids(self.pgid)

    def raylet_pid(self) -> int:
        (pid,) = [p for p in self.pids() if "/raylet/raylet " in _command(p)]
        return pid

    def stop(self) -> None:
        """End every process of the node, politely then by force, and wait until none is
        left."""
        for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 10.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pgid, sig)
            deadline = time.monotonic() + wait
            while self.pids() and time.monotonic() < deadline:
                time.sleep(0.1)
            if not self.pids():
                return
        raise AssertionError(f"ray node {self.label} left processes: {self.pids()}")


@dataclass
class RayCluster:
    """The session's local cluster: its address, its nodes, and the environment that reaches
    it (token authentication, with a token of its own)."""

    address: str
    #: the head's Ray Client server (``ray://127.0.0.1:<port>``)
    client_port: int
    root: Path
    env: dict[str, str]
    nodes: dict[str, RayNode] = field(default_factory=dict)
    #: each node's object store (small: a 2-core machine is shared; the benchmark asks more)
    object_store_bytes: int = 80_000_000
    #: the `ray` the nodes start with (that of the cluster's own environment)
    ray: Path = CLUSTER_ENV / "bin" / "ray"
    #: the user the nodes run as (None: this process's)
    user: str | None = None
    #: a folder node2 does not share with this machine (None: node2 shares every folder).
    #: node2 then runs in a mount namespace of its own, where an empty tmpfs covers this
    #: folder: files the kernel writes there are not on node2, and files node2's workers write
    #: there are not here, as between two machines (the other folders stay shared: the tests'
    #: marker files are seen on both nodes)
    apart: Path | None = None

    def start_node(self, label: str) -> RayNode:
        """Start (or restart) the node called `label` and wait until it has joined."""
        head = label == "head"
        # Every port chosen here: the defaults (8265, 10001, ...) may be another cluster's.
        ports = iter(free_ports(9))
        command = [
            str(self.ray),
            "start",
            "--num-cpus=2",
            f"--object-store-memory={self.object_store_bytes}",
            f"--resources={json.dumps(NODE_RESOURCES[label])}",
            "--disable-usage-stats",
            "--min-worker-port=0",
            "--max-worker-port=0",
            f"--node-manager-port={next(ports)}",
            f"--object-manager-port={next(ports)}",
            f"--runtime-env-agent-port={next(ports)}",
            f"--dashboard-agent-grpc-port={next(ports)}",
            f"--dashboard-agent-listen-port={next(ports)}",
            f"--metrics-export-port={next(ports)}",
        ]
        if head:
            command += [
                f"--port={self.address.rsplit(':', 1)[1]}",
                "--head",
                "--include-dashboard=false",
                f"--dashboard-port={next(ports)}",
                f"--ray-client-server-port={self.client_port}",
                f"--temp-dir={self.root}",
            ]
        else:
            command += ["--num-gpus=1", f"--address={self.address}"]
        if label == "node2" and self.apart is not None:
            mount = 'mount -t tmpfs -o size=64m,mode=1777 sieve-apart "$0" && exec "$@"'
            unshare = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", mount]
            command = [*unshare, str(self.apart), *command]
        # A session of its own: the node's processes are found, and ended, by process group.
        process = subprocess.Popen(
            command,
            env=self.env,
            **_as_user(self.user),
            # (its processes inherit it: podman, run by Ray as the cluster's user, must be
            # able to enter it, which a checkout under root's private folder is not)
            cwd=self.root,
            start_new_session=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        node = RayNode(label, process.pid)
        try:
            output, _ = process.communicate(timeout=_START_TIMEOUT)
        except subprocess.TimeoutExpired:
            node.stop()
            raise
        if process.returncode != 0:
            node.stop()
            raise RuntimeError(f"`ray start` of {label} failed:\n{output[-4000:]}")
        self.nodes[label] = node
        return node

    def stop(self) -> None:
        # worker nodes first: a raylet whose head is gone waits for it before it exits
        for label in sorted(self.nodes, key=lambda name: name == "head"):
            self.nodes.pop(label).stop()


def _as_user(name: str | None) -> dict[str, Any]:
    """`subprocess.Popen` arguments that run a process as user `name`, with its own groups
    only (None: as this process)."""
    if name is None:
        return {}
    import pwd

    entry = pwd.getpwnam(name)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def cluster_environment(token: str, root: Path) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "RAY_ADDRESS")
    }
    env.update(
        {
            "PATH": f"{CLUSTER_ENV / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
            # Token authentication, with this session's token (nothing is written to ~/.ray).
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": token,
            "RAY_USAGE_STATS_ENABLED": "0",
            # (what the workers keep on their node's disk goes with the cluster's folder)
            "TMPDIR": str(root),
            # A lost node is noticed in seconds rather than half a minute.
            "RAY_health_check_initial_delay_ms": "1000",
            "RAY_health_check_period_ms": "1000",
            "RAY_health_check_timeout_ms": "1000",
            "RAY_health_check_failure_threshold": "3",
        }
    )
    return env


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayCluster]:
    """A two-node Ray cluster on this machine for the whole session; the kernel side (this
    process) is configured to use it, and everything is stopped and removed at the end."""
    # (not imported yet: Ray reads its authentication settings once, when first imported)
    if importlib.util.find_spec("ray") is None:
        _unavailable("ray is not installed (pip install 'sieve-jupyter[ray]')")
    if "ray" in sys.modules:
        raise RuntimeError("ray was imported before the cluster's token was set")
    if not (CLUSTER_ENV / "bin" / "ray").exists():
        # (Ray is installed: the tier is meant to run, so this is a failure, not a skip)
        pytest.fail(
            f"the ray tier's cluster environment {CLUSTER_ENV} is missing. Fix: "
            "bash scripts/setup-ray-cluster-env (scripts/setup-test-env runs it).",
            pytrace=False,
        )
    import sieve_jupyter as sieve

    # Ray's Unix sockets live under its temp dir: keep the path short.
    root = Path(tempfile.mkdtemp(prefix="sjray-", dir=tmp_path_factory.getbasetemp()))
    if len(str(root)) > 40:
        shutil.rmtree(root)
        root = Path(tempfile.mkdtemp(prefix="sjray-", dir="/tmp"))
    token = os.urandom(16).hex()
    env = cluster_environment(token, root)
    port, client_port = free_ports(2)
    cluster = RayCluster(f"127.0.0.1:{port}", client_port, root, env, apart=_apart_folder(root))
    saved_env = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_ADDRESS")}
    saved_address = sieve.config.ray_address
    try:
        cluster.start_node("head")
        cluster.start_node("node2")
        # This process (the kernel of the behaviour tests) and the kernels it starts.
        os.environ.update(
            {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token, "RAY_ADDRESS": cluster.address}
        )
        sieve.configure(ray_address=cluster.address)
        yield cluster
    finally:
        with contextlib.suppress(Exception):
            _disconnect()
        sieve.configure(ray_address=saved_address)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        try:
            cluster.stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)


def _apart_folder(root: Path) -> Path | None:
    """The folder node2 will not share (`RayCluster.apart`), where a mount namespace of its own
    can be made (as root, with util-linux's unshare); else None, saying why outside CI."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        reason = "not root" if os.geteuid() != 0 else "no unshare"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"ray tier: node2 cannot have folders of its own ({reason})")
        print(f"\nray tier: node2 shares every folder with this machine ({reason})")
        return None
    apart = root / "apart"
    apart.mkdir()
    return apart


def _disconnect() -> None:
    """Stop this process's Ray workers and its connection before the cluster goes."""
    from sieve_jupyter.manager import get_manager

    manager = get_manager()
    for record in manager.records():
        if record.backend == "ray":
            manager.unregister(record.name)
    backend = manager._backends.pop("ray", None)  # (a fresh one if a later test asks)
    if backend is not None:
        backend.close()
    import ray as ray_module

    if ray_module.is_initialized():
        ray_module.shutdown()
