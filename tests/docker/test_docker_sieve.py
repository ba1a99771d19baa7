"""Sieve functions and models on the Docker backend, end to end through the SDK and manager.

What a user would notice: the model stays warm in its container, edits do not rebuild, pip and
apt packages are really there, output streams back, a crash is survived, and no container
outlives its function or its kernel.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from typing import Any

import pytest

import sieve_jupyter as sieve
from sieve_jupyter._errors import WorkerCrashedError
from sieve_jupyter.manager import get_manager

PACKAGES = {"python_packages": ["tomli-w==1.0.0"], "system_packages": ["jq"]}


@pytest.fixture
def handles(docker_env: dict[str, str]) -> Iterator[list[Any]]:
    """Handles created by a test; stopped afterwards."""
    made: list[Any] = []
    yield made
    for handle in made:
        handle.stop()


def kernel_containers(client: Any, kernel_id: str, function: str | None = None) -> list[Any]:
    labels = [f"sieve-jupyter.kernel={kernel_id}"]
    if function is not None:
        labels.append(f"sieve-jupyter.function={function}")
    found: list[Any] = client.containers.list(all=True, filters={"label": labels})
    return found


def eventually_empty(client: Any, kernel_id: str, function: str | None = None) -> list[Any]:
    """The kernel's containers, polled until there are none (or a generous limit passes)."""
    deadline = time.monotonic() + 60
    while True:
        left = kernel_containers(client, kernel_id, function)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


def test_model_stays_warm_in_its_container(handles: list[Any]) -> None:
    @sieve.Model(name="docker-warm-counter", backend="docker")
    class Counter:
        def __setup__(self) -> None:
            self.calls = 0
            self.setups = int(os.environ.get("SETUPS", "0")) + 1

        def __predict__(self, x: int) -> tuple[int, int, bool]:
            self.calls += 1
            return self.calls, x, os.path.exists("/.dockerenv")

    handles.append(Counter)
    results = [Counter.run(i) for i in range(20)]
    assert [r[0] for r in results] == list(range(1, 21))  # one __setup__, one warm instance
    assert all(r[2] for r in results)  # and it really ran in a container
    [worker] = Counter.workers
    assert worker["container_state"] == "running"


def test_configured_default_backend_is_docker(
    handles: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sieve.config, "backend", "docker")

    @sieve.function(name="docker-by-default")
    def where() -> bool:
        return os.path.exists("/.dockerenv")

    handles.append(where)
    assert where.run() is True


def test_pip_and_apt_packages_are_installed(handles: list[Any]) -> None:
    @sieve.function(name="docker-packages", backend="docker", **PACKAGES)
    def versions() -> str:
        import tomli_w

        jq = subprocess.run(["jq", "--version"], capture_output=True, text=True, check=True)
        return f"{tomli_w.dumps({'a': 1}).strip()} {jq.stdout.strip()}"

    handles.append(versions)
    text = versions.run()
    assert text.startswith("a = 1 jq-")


def test_editing_code_reuses_the_image_and_restarts_nothing_else(
    handles: list[Any], docker_client: Any
) -> None:
    @sieve.function(name="docker-edit", backend="docker", **PACKAGES)
    def answer() -> str:
        return "first"

    handles.append(answer)
    assert answer.run() == "first"
    backend = get_manager().backend("docker")
    builds_before = list(backend.built)
    images_before = {image.id for image in docker_client.images.list()}

    @sieve.function(name="docker-edit", backend="docker", **PACKAGES)  # type: ignore[no-redef]
    def answer() -> str:
        return "second"

    handles.append(answer)
    assert answer.run() == "second"
    assert backend.built == builds_before
    assert {image.id for image in docker_client.images.list()} == images_before


def test_a_build_streams_its_log_to_the_job_that_waits_for_it(
    handles: list[Any], docker_client: Any
) -> None:
    # a run command no earlier build had: only that step runs, the rest comes from the cache
    marker = f"sieve-build-{os.urandom(4).hex()}"

    @sieve.function(name="docker-first-job", backend="docker", run_commands=[f"echo {marker}"])
    def hello() -> str:
        return "hi"

    handles.append(hello)
    future = hello.push()
    try:
        assert future.result(timeout=600) == "hi"
        assert f"RUN echo {marker}" in future.stdout  # the step, as it ran
        assert "Built image sieve-jupyter-env:" in future.stdout
        assert future.stdout.endswith("\n")
    finally:
        hello.stop()
        image = get_manager().backend("docker").image_for(hello.spec)
        docker_client.images.remove(image, force=True)


def test_output_and_logs_stream_back_from_the_container(handles: list[Any]) -> None:
    @sieve.function(name="docker-chatty", backend="docker")
    def chatty(n: int) -> Iterator[int]:
        for i in range(n):
            print(f"line {i}")
            yield i * 10

    handles.append(chatty)
    future = chatty.push(3)
    assert list(future.result(timeout=120)) == [0, 10, 20]
    assert "line 2" in future.stdout


def test_declared_env_reaches_the_container_and_not_the_image(
    handles: list[Any], monkeypatch: pytest.MonkeyPatch, docker_client: Any
) -> None:
    monkeypatch.setenv("SIEVE_DOCKER_TEST_TOKEN", "s3cret-value")

    @sieve.function(
        name="docker-env",
        backend="docker",
        environment_variables=[sieve.Env(name="SIEVE_DOCKER_TEST_TOKEN")],
    )
    def token() -> str:
        return os.environ["SIEVE_DOCKER_TEST_TOKEN"]

    handles.append(token)
    assert token.run() == "s3cret-value"
    image = docker_client.images.get(token.workers[0]["image"])
    assert "s3cret-value" not in str(image.attrs) + str(image.history())


def test_a_crash_fails_only_its_job_and_the_next_call_gets_a_new_container(
    handles: list[Any],
) -> None:
    @sieve.function(name="docker-fragile", backend="docker")
    def fragile(x: int) -> int:
        if x < 0:
            os._exit(3)
        return x

    handles.append(fragile)
    assert fragile.run(1) == 1
    first = fragile.workers[0]["container"]
    with pytest.raises(WorkerCrashedError):
        fragile.run(-1)
    assert fragile.run(2) == 2
    assert fragile.workers[0]["container"] != first


def test_stop_removes_the_functions_containers(handles: list[Any], docker_client: Any) -> None:
    @sieve.function(name="docker-stopped", backend="docker")
    def ping() -> str:
        return "pong"

    assert ping.run() == "pong"
    kernel = get_manager().kernel_id
    assert len(kernel_containers(docker_client, kernel, "docker-stopped")) == 1
    ping.stop()
    assert eventually_empty(docker_client, kernel, "docker-stopped") == []


KERNEL_SCRIPT = """
import sys, time
import sieve_jupyter as sieve
from sieve_jupyter.manager import get_manager

@sieve.function(name="docker-kernel-owned", backend="docker")
def ping() -> str:
    return "pong"

assert ping.run() == "pong"
print(get_manager().kernel_id, flush=True)
if sys.argv[1] == "hang":
    time.sleep(600)
"""


def run_kernel(mode: str) -> tuple[subprocess.Popen[str], str]:
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(KERNEL_SCRIPT), mode],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    kernel_id = child.stdout.readline().strip()
    assert kernel_id, "the child kernel did not get its function running"
    return child, kernel_id


def test_a_kernel_that_exits_leaves_no_container(
    docker_env: dict[str, str], docker_client: Any
) -> None:
    child, kernel_id = run_kernel("exit")
    child.communicate(timeout=120)
    assert child.returncode == 0
    assert kernel_containers(docker_client, kernel_id) == []


def test_containers_of_a_killed_kernel_are_reaped(
    docker_env: dict[str, str], docker_client: Any
) -> None:
    from sieve_jupyter.backends.docker import DockerBackend

    child, kernel_id = run_kernel("hang")
    assert len(kernel_containers(docker_client, kernel_id)) == 1
    child.send_signal(signal.SIGKILL)  # no atexit, no cleanup: only the reaper can help
    child.communicate(timeout=60)
    backend = DockerBackend()  # what the next kernel does on first use
    try:
        backend.reap()
        assert kernel_containers(docker_client, kernel_id) == []
    finally:
        backend.close()
