"""A bundle's image, built from the local base image with the real engine: it runs the server
as its command, answers on a published loopback port, stops cleanly, and leaves nothing."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import nbformat
import pytest

from sieve_jupyter.bundle import export_notebook

CELLS = [
    # a module and a file of the notebook's folder, which the bundle must carry into the image
    "import sieve_jupyter as sieve\n"
    "from offsets import extra\n"
    "GREETING = open('greeting.txt').read()",
    """@sieve.Model(name="adder", python_packages=["six==1.17.0"],
             environment_variables=[sieve.Env(name="OFFSET", description="added")])
class Adder:
    def __setup__(self):
        import os, six  # the user's package, only in the workers' environment
        self.offset = int(os.environ["OFFSET"])
    def __predict__(self, x1: int, x2: int) -> int:
        return x1 + x2 + self.offset + extra() + len(GREETING)""",
]


@pytest.mark.timeout(1800)  # a first build installs the server's packages from the index
def test_bundle_image_builds_runs_answers_and_is_removed(
    docker_client: Any, docker_env: dict[str, str], tmp_path: Path
) -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(c) for c in CELLS]
    nbformat.write(notebook, tmp_path / "adder.ipynb")
    (tmp_path / "offsets.py").write_text("def extra():\n    return 1000\n")
    (tmp_path / "greeting.txt").write_text("hi")
    export_notebook(
        tmp_path / "adder.ipynb",
        tmp_path / "bundle",
        base_image=docker_env["SIEVE_DOCKER_BASE_IMAGE"],
        ca_bundle=docker_env.get("SIEVE_DOCKER_CA_BUNDLE"),
    )
    tag = f"sieve-bundle-test:{uuid.uuid4().hex[:12]}"
    container = None
    try:
        image, _ = docker_client.images.build(
            path=str(tmp_path / "bundle"), tag=tag, network_mode="host", rm=True, forcerm=True
        )
        labels = image.labels
        openapi = json.loads(labels["io.sieve-jupyter.openapi"])
        assert "Input" in openapi["components"]["schemas"]
        assert json.loads(labels["io.sieve-jupyter.bundle"])["default"] == "adder"
        container = docker_client.containers.run(
            tag,
            detach=True,
            environment={"OFFSET": "100"},
            ports={"8000/tcp": ("127.0.0.1", None)},
            labels={"sieve-jupyter.test": "bundle"},
        )
        container.reload()
        port = container.ports["8000/tcp"][0]["HostPort"]
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while True:
            try:
                health = httpx.get(f"{url}/health-check", timeout=5).json()
            except httpx.TransportError:
                health = {"status": "unreachable"}
            if health["status"] == "READY":
                break
            assert health["status"] in ("unreachable", "STARTING"), health
            container.reload()
            assert container.status == "running", container.logs().decode()
            assert time.monotonic() < deadline, (health, container.logs().decode())
            time.sleep(0.2)
        response = httpx.post(f"{url}/predictions", json={"input": {"x1": 1, "x2": 2}}, timeout=60)
        assert response.status_code == 200 and response.json()["output"] == 1105
        # the server's own environment never sees the user's package
        probe = container.exec_run(["/opt/sieve/server/bin/python", "-c", "import six"])
        assert probe.exit_code != 0
        container.stop(timeout=30)  # SIGTERM: a graceful stop
        container.reload()
        assert container.attrs["State"]["ExitCode"] == 0, container.logs().decode()
    finally:
        if container is not None:
            container.remove(force=True)
        # (a container the engine created but could not start never reached `container`)
        for left in docker_client.containers.list(
            all=True, filters={"label": "sieve-jupyter.test=bundle"}
        ):
            left.remove(force=True)
        docker_client.images.remove(tag, force=True)
    assert not docker_client.containers.list(all=True, filters={"label": "sieve-jupyter.test"})
    assert not [i for i in docker_client.images.list() if tag in i.tags]
