"""The Docker backend against a real engine: images, containers, failures, and cleanup.

These drive the backend directly with a hand-made IPC directory (the real protocol); the shared
behaviour tests run the full manager on top of it.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from typing import Any

import pytest

from sieve_jupyter._errors import BackendError, BuildError, PythonVersionMismatchError
from sieve_jupyter.backends import GpuAssignment, WorkerLaunch
from sieve_jupyter.runtime.messages import Hello, unpack
from sieve_jupyter.spec import Environment, FunctionSpec

KERNEL_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


def spec(name: str = "probe", **environment: Any) -> FunctionSpec:
    return FunctionSpec(name=name, environment=Environment(**environment))


def wait_for_exit(worker: Any, limit: float = 60.0) -> int | None:
    deadline = time.monotonic() + limit
    while worker.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    code: int | None = worker.poll()
    return code


def launch(ipc: Any, the_spec: FunctionSpec, **kw: Any) -> WorkerLaunch:
    return WorkerLaunch(spec=the_spec, worker_id="w1", ipc_dir=ipc.dir, **kw)


def test_same_environment_never_builds_twice(docker_backend: Any) -> None:
    from sieve_jupyter.backends.docker import DockerBackend

    the_spec = spec(python_packages=["six==1.17.0"])
    docker_backend.prepare(the_spec, lambda line: None)
    # a second kernel (a new backend) finds the image by its content tag and builds nothing
    again = DockerBackend()
    lines: list[str] = []
    again.prepare(spec("another-name", python_packages=["six==1.17.0"]), lines.append)
    assert again.built == []
    assert lines == []  # nothing to report: no build step ran
    assert again.image_for(the_spec) == docker_backend.image_for(the_spec)


def test_build_streams_its_log_and_installs_apt_and_pip_packages(
    docker_backend: Any, docker_client: Any
) -> None:
    # a package list no other test uses, so this build really happens (or was cached earlier)
    the_spec = spec(python_packages=["tomli-w==1.0.0"], system_packages=["jq"])
    lines: list[str] = []
    docker_backend.prepare(the_spec, lines.append)
    image = docker_backend.image_for(the_spec)
    if docker_backend.built:  # a fresh build: its steps reached the log callback as they ran
        assert any(line.startswith("Step ") and "pip install" in line for line in lines)
    out = docker_client.containers.run(
        image,
        ["sh", "-c", "jq --version && python -c 'import tomli_w, cloudpickle; print(\"ok\")'"],
        remove=True,
        network_mode="none",
    )
    assert b"jq-" in out and b"ok" in out


def test_failed_build_names_the_step_and_shows_its_output(docker_backend: Any) -> None:
    the_spec = spec(system_packages=["no-such-package-for-sieve-tests"])
    with pytest.raises(BuildError) as info:
        docker_backend.prepare(the_spec, lambda line: None)
    error = info.value
    assert "apt-get install" in error.step
    assert "no-such-package-for-sieve-tests" in error.log_tail
    assert "apt-get install" in str(error)
    assert "No apt package is called no-such-package-for-sieve-tests" in str(error)
    assert "Fix: check its name in system_packages" in str(error)


def test_a_build_without_network_says_so_and_names_the_setting(docker_env: dict[str, str]) -> None:
    import dataclasses

    from sieve_jupyter.backends.docker import DockerBackend, DockerOptions

    # (the user's packages are a layer of their own: the runtime's, cached, need no network)
    options = dataclasses.replace(DockerOptions.current(), build_network="none")
    backend = DockerBackend(options)
    try:
        with pytest.raises(BuildError) as info:
            backend.prepare(spec(python_packages=["sieve-offline-probe==1.0"]), lambda line: None)
    finally:
        backend.close()
    assert "pip install" in info.value.step
    message = str(info.value)
    assert "cannot reach the network" in message and "SIEVE_DOCKER_BUILD_NETWORK=host" in message
    assert "has no release" not in message  # the network, not the package, is the cause


def test_unreachable_base_image_names_the_setting_to_change(docker_env: dict[str, str]) -> None:
    from sieve_jupyter.backends.docker import DockerBackend, DockerOptions

    backend = DockerBackend(DockerOptions(base_image="sieve-test/no-such-base:1"))
    with pytest.raises(BuildError) as info:
        backend.prepare(spec(), lambda line: None)
    assert info.value.step == "FROM sieve-test/no-such-base:1"
    assert "docker_base_image" in str(info.value)


def test_a_push_the_registry_refuses_names_the_setting_and_the_fix(
    docker_backend: Any, docker_client: Any
) -> None:
    # (nothing listens on this port: the engine cannot push there)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        registry = f"127.0.0.1:{sock.getsockname()[1]}"
    lines: list[str] = []
    try:
        with pytest.raises(BackendError) as info:
            docker_backend.publish(spec(), registry, (), lines.append)
        message = str(info.value)
        assert message.startswith(f"ray_image_registry: pushing {registry}/sieve-jupyter-env:")
        assert "Fix:" in message and "docker login 127.0.0.1" in message
        assert any(line.startswith("Pushing ") for line in lines)
    finally:
        for image in docker_client.images.list():
            for tag in image.tags:
                if tag.startswith(f"{registry}/"):
                    docker_client.images.remove(tag, force=True)


def test_worker_container_connects_gets_env_and_leaves_nothing(
    docker_backend: Any, docker_client: Any, ipc: Any
) -> None:
    the_spec = spec()
    worker = docker_backend.start_worker(
        launch(ipc, the_spec, env={"SIEVE_TEST_VALUE": "42"}, labels={"sieve.kernel": "k1"})
    )
    channel = ipc.accept()
    hello = unpack(channel.recv())
    assert isinstance(hello, Hello) and hello.worker == "w1" and hello.connection == "data"
    assert tuple(hello.python[:2]) == sys.version_info[:2]
    container = docker_client.containers.get(worker.container_id)
    assert container.labels["sieve.kernel"] == "k1"
    assert container.labels["io.sieve-jupyter.function"] == "probe"
    assert container.attrs["HostConfig"]["NetworkMode"] == "none"
    code, out = container.exec_run(["printenv", "SIEVE_TEST_VALUE"])
    assert out.strip() == b"42"
    assert worker.details()["container_state"] == "running"
    assert worker.poll() is None
    worker.terminate(grace=2)
    assert worker.poll() is not None
    assert docker_backend.containers() == []
    channel.close()


def test_a_killed_container_reports_the_signal_and_is_removed(
    docker_backend: Any, docker_client: Any, ipc: Any
) -> None:
    worker = docker_backend.start_worker(launch(ipc, spec()))
    ipc.accept()
    docker_client.api.kill(worker.container_id, signal="SIGKILL")
    assert wait_for_exit(worker) == -9
    assert worker.details()["container_state"] == "removed"
    assert docker_backend.containers() == []


def test_a_container_that_cannot_start_its_worker_explains_why(
    docker_backend: Any, ipc: Any
) -> None:
    (ipc.dir / "key").unlink()  # the worker cannot authenticate: it fails at once
    worker = docker_backend.start_worker(launch(ipc, spec()))
    assert wait_for_exit(worker) not in (None, 0)
    # its output lands in the boot log, which the manager shows when a worker never connects
    assert "key" in (ipc.dir / "boot.log").read_text()


def test_reaper_removes_containers_of_dead_kernels_only(
    docker_backend: Any, docker_client: Any
) -> None:
    from sieve_jupyter.backends._docker_owner import MANAGED_LABEL, OWNER_LABEL, current_owner

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a kernel that has exited
    me = current_owner()
    dead_label = f"{me.host}/{me.boot_id}/{gone.pid}/{me.start_ticks}"
    image = docker_backend.image_for(spec())
    orphan = docker_client.containers.create(
        image, ["sleep", "600"], labels={MANAGED_LABEL: "1", OWNER_LABEL: dead_label}
    )
    alive = docker_client.containers.create(
        image, ["sleep", "600"], labels={MANAGED_LABEL: "1", OWNER_LABEL: me.label}
    )
    try:
        removed = docker_backend.reap()
        assert orphan.id in removed
        assert alive.id not in removed
        alive.reload()  # still there
    finally:
        for container in (orphan, alive):
            with contextlib.suppress(Exception):  # already gone
                container.remove(force=True)


def test_close_removes_every_container_of_this_kernel(docker_backend: Any, ipc: Any) -> None:
    docker_backend.start_worker(launch(ipc, spec()))
    assert len(docker_backend.containers()) == 1
    docker_backend.close()
    assert docker_backend.containers() == []


def test_gpu_worker_without_nvidia_runtime_names_the_fix(
    docker_backend: Any, docker_client: Any, ipc: Any
) -> None:
    if "nvidia" in (docker_client.info().get("Runtimes") or {}):
        pytest.skip("this engine has the NVIDIA runtime")
    with pytest.raises(BackendError) as info:
        docker_backend.start_worker(launch(ipc, spec(), gpu=GpuAssignment((0,))))
    assert "NVIDIA Container Toolkit" in str(info.value)
    assert docker_backend.containers() == []


def test_python_version_other_than_the_kernels_fails_early_with_the_fix(
    docker_env: dict[str, str],
) -> None:
    from sieve_jupyter.backends.docker import DockerBackend

    other = "3.8" if KERNEL_PYTHON != "3.8" else "3.9"
    with pytest.raises(PythonVersionMismatchError) as info:
        DockerBackend().check(spec(python_version=other))
    message = str(info.value)
    assert "python_version" in message
    assert f'python_version="{KERNEL_PYTHON}"' in message
    assert DockerBackend().check(spec()) == []
