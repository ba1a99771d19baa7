"""`sieve-jupyter serve BUNDLE --backend ray`: a served bundle whose workers are actors of the
tier's two-node cluster, so its predictions are answered on both machines. The bundle's `src/`
reaches each actor's node through Ray (a file its module reads when imported included), files
its functions return come back from the node that does not share this one's folders, and
stopping the server ends its actors. Files uploaded to it reach workers on either node."""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import os
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sieve_jupyter.bundle import export_file
from tests.serve._servers import Server

PROJECT = """
import os
import tempfile

import sieve_jupyter as sieve

GREETING = open("greeting.txt").read().strip()  # (a file of the project, read at import)


@sieve.Model(name="where")
class Where:
    def __setup__(self):
        import ray

        self.node = ray.get_runtime_context().get_node_id()

    def __predict__(self, x: int) -> dict:
        import ray

        return {
            "node": self.node,
            "actor": ray.get_runtime_context().get_actor_id(),
            "pid": os.getpid(),
            "answer": f"{GREETING} {2 * x}",
        }


@sieve.function(name="checksum")
def checksum(document: sieve.File) -> dict:
    import hashlib

    import ray

    with open(document.path, "rb") as fh:
        digest = hashlib.sha256(fh.read()).hexdigest()
    return {"sha256": digest, "node": ray.get_runtime_context().get_node_id()}


@sieve.function(name="make-file")
def make_file(size: int, apart: str = "") -> dict:
    import ray

    folder = tempfile.mkdtemp(dir=apart or None)
    path = os.path.join(folder, "made.bin")
    with open(path, "wb") as fh:
        fh.write(bytes(range(256)) * (size // 256))
    return {"file": sieve.File(path), "node": ray.get_runtime_context().get_node_id()}
"""


def _node_ids() -> set[str]:
    import ray

    from sieve_jupyter.manager import get_manager

    get_manager().backend("ray").connect()  # (as the backend connects: ray.init is its own)
    return {n["NodeID"] for n in ray.nodes() if n["Alive"]}


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    (project / "main.py").write_text(textwrap.dedent(PROJECT))
    (project / "greeting.txt").write_text("hello from the project\n")
    exported = export_file(project / "main.py", tmp_path / "bundle")
    assert exported.path is not None
    return Path(exported.path)


def test_a_bundle_served_on_ray_answers_on_every_node(bundle: Path, ray_cluster: Any) -> None:
    server = Server(bundle, "--backend", "ray", "--workers", "2")
    try:
        deadline = time.monotonic() + 120
        while server.health()["functions"]["where"]["ready_workers"] < 2:
            assert time.monotonic() < deadline, server.health()
            time.sleep(0.1)

        seen: list[dict[str, Any]] = []

        def where(x: int) -> str:
            response = server.predict({"input": {"x": x}}, "/functions/where/predictions")
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["status"] == "succeeded", body
            assert body["output"]["answer"] == f"hello from the project {2 * x}"
            seen.append(body["output"])
            return str(body["output"]["node"])

        assert _on_every_node(where) == _node_ids()  # one worker on each machine
        assert all(o["actor"] for o in seen) and len({o["actor"] for o in seen}) == 2

        size = 3 * 256 * 1024

        def make_file(_: int) -> str:
            body = {"input": {"size": size, "apart": str(ray_cluster.apart or "")}}
            response = server.predict(body, "/functions/make-file/predictions")
            assert response.status_code == 200, response.text
            output = response.json()["output"]
            assert output["file"].startswith("data:"), str(output)[:80]
            content = base64.b64decode(output["file"].split(",", 1)[1])
            assert content == bytes(range(256)) * (size // 256)
            return str(output["node"])

        # (made on node2, which does not share the server's folders, the file comes anyway)
        assert _on_every_node(make_file) == _node_ids()

        # a file uploaded to the server reaches its workers on both nodes
        upload = os.urandom(200_000)
        data_url = "data:application/octet-stream;base64," + base64.b64encode(upload).decode()

        def checksum(_: int) -> str:
            body = {"input": {"document": data_url}}
            response = server.predict(body, "/functions/checksum/predictions")
            assert response.status_code == 200, response.text
            output = response.json()["output"]
            assert output["sha256"] == hashlib.sha256(upload).hexdigest()
            return str(output["node"])

        assert _on_every_node(checksum) == _node_ids()
    finally:
        assert server.stop() == 0, server.output
    pids = {o["pid"] for o in seen}
    deadline = time.monotonic() + 60
    while _alive(pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(pids)  # the server's actors ended with it


def _on_every_node(predict: Callable[[int], str]) -> set[str]:
    """The nodes that answered `predict` (which returns the node it ran on), called in rounds
    of overlapping predictions (two workers are both busy only when predictions overlap) until
    every node of the cluster answered, a minute at most."""
    answered: set[str] = set()
    deadline = time.monotonic() + 60
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        while answered != _node_ids() and time.monotonic() < deadline:
            answered.update(pool.map(predict, range(16)))
    return answered


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        alive.add(pid)
    return alive
