"""Docker deployments (marker `docker`): a container per version from the bundle's image,
with a restart policy, whose labels are the registry. One test walks a deployment's life,
since every version is an image build: deployed by a script that exits, called by name from
another process, its server crashing and coming back, redeployed under a client loop with no
failed call, a broken version refused while the old one serves, undeployed leaving nothing."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _deployed import ClientLoop, Deploy, adder_cells, caller_script, deploy_script
from support import run_script

import sieve_jupyter as sieve
from sieve_jupyter.deploy._registry import LocalRegistry

pytestmark = [pytest.mark.docker, pytest.mark.timeout(2400)]


@pytest.fixture
def docker_user(docker_client: Any, docker_env: dict[str, str]) -> Iterator[str]:
    """A user name of this test's own (the engine is shared: only its containers are
    touched); afterwards none of its containers or images may remain."""
    user = f"dt{uuid.uuid4().hex[:8]}"
    yield user
    label = f"io.sieve-jupyter.deployment.user={user}"
    left = docker_client.containers.list(all=True, filters={"label": label})
    for container in left:
        container.remove(force=True)
    images = [
        tag
        for image in docker_client.images.list("sieve-jupyter-deploy")
        for tag in image.tags
        if f":{user}-" in tag
    ]
    for tag in images:
        docker_client.images.remove(tag, force=True)
    assert not left, f"containers left: {[c.name for c in left]}"
    assert not images, f"images left: {images}"


def _containers(client: Any, user: str) -> list[Any]:
    return client.containers.list(
        all=True, filters={"label": f"io.sieve-jupyter.deployment.user={user}"}
    )


def test_a_docker_deployment_lives_on_its_own_and_leaves_nothing(
    docker_client: Any, docker_user: str, tmp_path: Path, deploy_cells: Deploy
) -> None:
    user = docker_user
    deployed = run_script(
        deploy_script(user, 'backend="docker"'), tmp_path / "deploy_adder.py", timeout=1500
    )
    assert f"Deployed {user}/adder version 1-" in deployed.stdout
    assert "(docker)" in deployed.stdout

    called = json.loads(run_script(caller_script(user), tmp_path / "caller.py").stdout)
    assert (called["run"], called["push"]) == (3, 5)

    # the labels are the registry: nothing of it is in the local registry file
    assert LocalRegistry().entries() == []
    (container,) = _containers(docker_client, user)
    labels = container.labels
    assert labels["io.sieve-jupyter.deployment"] == f"{user}/adder"
    assert labels["io.sieve-jupyter.deployment.version"].startswith("1-")
    assert container.attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    listed = [d for d in sieve.deployments(user)]
    assert [(d.key, d.backend, d.health) for d in listed] == [(f"{user}/adder", "docker", "READY")]

    # its server crashes: the restart policy brings it back, and a handle carries on
    handle = sieve.function.get(f"{user}/adder")
    logs = container.logs().decode()
    pid = re.search(r"deployment \S+ \(pid (\d+)\)", logs)
    assert pid is not None, logs
    container.exec_run(
        ["/opt/sieve/server/bin/python", "-c", f"import os; os.kill({pid.group(1)}, 9)"]
    )
    while container.attrs["RestartCount"] < 1:
        time.sleep(0.2)
        container.reload()
    assert handle.run(5, 5) == 10
    assert sieve.deployments(user)[0].restarts == 1

    sieve.configure(user=user)
    with ClientLoop(handle) as clients:
        second = deploy_cells(
            adder_cells(offset=100, delay=0.1), tmp_path / "v2.ipynb", backend="docker"
        )
        clients.wait_for(len(clients.results) + 4)
    results = clients.results
    assert clients.failures == []
    assert second.outcome == "updated" and second.version.startswith("2-")
    assert set(results) == {3, 103}
    assert results[-2:] == [103, 103]
    assert [
        c.labels["io.sieve-jupyter.deployment.version"] for c in _containers(docker_client, user)
    ] == [second.version]

    broken = adder_cells(offset=7, setup='raise RuntimeError("no weights here")')
    with pytest.raises(sieve.DeployError, match="no weights here") as caught:
        deploy_cells(broken, tmp_path / "v3.ipynb", timeout=600, backend="docker")
    assert f"version {second.version} keeps serving" in str(caught.value)
    assert handle.run(1, 1) == 102
    assert [
        c.labels["io.sieve-jupyter.deployment.version"] for c in _containers(docker_client, user)
    ] == [second.version]

    sieve.undeploy(f"{user}/adder", log=lambda line: None)
    assert _containers(docker_client, user) == []
    assert [
        t
        for i in docker_client.images.list("sieve-jupyter-deploy")
        for t in i.tags
        if f":{user}-" in t
    ] == []
    with pytest.raises(sieve.FunctionNotFoundError):
        sieve.function.get(f"{user}/adder")
