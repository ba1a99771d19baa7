"""`sieve-jupyter deploy main.py --backend ray`: a deployment that outlives the process that
made it, whose workers are actors of the tier's two-node cluster; found by name from this
process, listed with its backend, and gone, actors included, once undeployed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import script_env

import sieve_jupyter as sieve

MAIN = """
import os

import sieve_jupyter as sieve


@sieve.Model(name="locator")
class Locator:
    def __setup__(self):
        import ray

        self.node = ray.get_runtime_context().get_node_id()

    def __predict__(self, x: int) -> dict:
        return {"node": self.node, "pid": os.getpid(), "double": 2 * x}
"""


@pytest.fixture
def deployments_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A registry of this test's own; whatever it deployed is undeployed afterwards."""
    home = tmp_path / "jupyter-data"
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(home))
    monkeypatch.delenv("SIEVE_DEPLOYMENTS_DIR", raising=False)
    yield home
    for deployment in sieve.deployments():
        sieve.undeploy(deployment.key, log=lambda line: None)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sieve_jupyter.cli", *args],
        env=script_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_a_deployment_on_ray_serves_from_the_cluster_after_its_deployer_exits(
    tmp_path: Path, deployments_home: Path
) -> None:
    import ray

    from sieve_jupyter.manager import get_manager

    (tmp_path / "main.py").write_text(textwrap.dedent(MAIN))
    made = cli("deploy", str(tmp_path / "main.py"), "--backend", "ray", "--user", "carol")
    assert made.returncode == 0, made.stderr
    assert "Deployed carol/locator version 1-" in made.stdout and "(ray)" in made.stdout
    # (the deploying process has exited: the deployment runs on)
    (listed,) = sieve.deployments()
    assert (listed.key, listed.backend) == ("carol/locator", "ray")
    answer: dict[str, Any] = sieve.function.get("carol/locator").run(21)
    assert answer["double"] == 42
    get_manager().backend("ray").connect()  # type: ignore[attr-defined]
    assert answer["node"] in {n["NodeID"] for n in ray.nodes() if n["Alive"]}  # a Ray actor

    gone = cli("undeploy", "carol/locator")
    assert gone.returncode == 0, gone.stderr
    assert sieve.deployments() == []
    deadline = time.monotonic() + 60
    while _alive(answer["pid"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(answer["pid"])  # its actor ended with its server


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
