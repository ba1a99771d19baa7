"""Fixtures of the docker tier, loaded for the whole test suite (tests/conftest.py names this
plugin) so the shared behaviour tests can run on the Docker backend too.

A real engine and the local base image must be there, or the docker tests skip with the reason
(and fail in CI). CI runs ``.ci/docker-engine.sh`` first and exports ``SIEVE_TEST_BASE_IMAGE``.
No registry is reachable there, so builds start from that image, trust the host's CA bundle and
use host networking; workers run with ``network_mode="none"``.
"""

from __future__ import annotations

import gc
import os
import shutil
import socket
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
DEFAULT_BASE = "sieve-jupyter-test/base:bookworm"


def _unavailable(reason: str) -> None:
    # In CI the docker tier is part of the contract: a missing engine is a failure.
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"docker tier cannot run in CI: {reason}", pytrace=False)
    print(f"\nskipping the docker tier: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def docker_client() -> Any:
    """A client of a running engine that has the test base image."""
    try:
        import docker
        import docker.errors
    except ImportError:
        _unavailable("the docker package is not installed (pip install 'sieve-jupyter[docker]')")
    client = None
    problem = ""
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        problem = str(exc)
    if problem:
        if client is not None:
            client.close()
        # docker-py leaks the socket of a failed version probe; collect it quietly now rather
        # than have its ResourceWarning surface in whatever test runs next
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
        _unavailable(f"no Docker engine answers ({problem}); run `bash .ci/docker-engine.sh`")
    assert client is not None
    base = os.environ.get("SIEVE_TEST_BASE_IMAGE", DEFAULT_BASE)
    try:
        client.api.inspect_image(base)
    except docker.errors.ImageNotFound:
        _unavailable(f"base image {base} is missing; run `bash .ci/docker-engine.sh`")
    return client


@pytest.fixture(scope="session")
def docker_env(docker_client: Any) -> Iterator[dict[str, str]]:
    """The ``SIEVE_DOCKER_*`` settings for this machine, exported for the whole session so
    backends created by name (``backend="docker"``) pick them up too."""
    settings = {
        "SIEVE_DOCKER_BASE_IMAGE": os.environ.get("SIEVE_TEST_BASE_IMAGE", DEFAULT_BASE),
        "SIEVE_DOCKER_BUILD_NETWORK": "host",
        "SIEVE_DOCKER_NETWORK": "none",
    }
    if HOST_CA_BUNDLE.exists():
        settings["SIEVE_DOCKER_CA_BUNDLE"] = str(HOST_CA_BUNDLE)
    saved = {k: os.environ.get(k) for k in settings}
    os.environ.update(settings)
    yield settings
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def docker_backend_ready(docker_env: dict[str, str]) -> Iterator[bool]:
    """The Docker backend can run the shared behaviour tests: engine, base image, settings,
    and a shared folder mounted into containers at its own path (``SIEVE_TEST_SHARED_DIR``)."""
    shared = tempfile.mkdtemp(prefix="sieve-shared-", dir="/tmp")
    saved = {k: os.environ.get(k) for k in ("SIEVE_TEST_SHARED_DIR", "SIEVE_DOCKER_MOUNTS")}
    os.environ["SIEVE_TEST_SHARED_DIR"] = shared
    os.environ["SIEVE_DOCKER_MOUNTS"] = shared
    yield True
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    shutil.rmtree(shared, ignore_errors=True)


@pytest.fixture
def docker_backend(docker_env: dict[str, str]) -> Iterator[Any]:
    """A fresh DockerBackend configured for this machine; its containers are removed after."""
    from sieve_jupyter.backends.docker import DockerBackend

    backend = DockerBackend()
    yield backend
    backend.close()


class HandMadeIpc:
    """A private IPC directory with a listening socket, standing in for the manager's side so
    the backend can be tested on its own (the protocol is the real one)."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="sj-t-", dir="/tmp"))
        self.secret = os.urandom(32)
        (self.dir / "key").write_bytes(self.secret)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(self.dir / "sock"))
        self.listener.listen(2)
        self.channels: list[Any] = []

    def accept(self, timeout: float = 60.0) -> Any:
        """Accept and authenticate the worker's next connection; return its channel."""
        from sieve_jupyter.runtime.protocol import Channel, authenticate_server

        self.listener.settimeout(timeout)
        sock, _ = self.listener.accept()
        authenticate_server(sock, self.secret)
        channel = Channel(sock)
        self.channels.append(channel)
        return channel

    def close(self) -> None:
        for channel in self.channels:
            channel.close()
        self.listener.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def ipc() -> Iterator[HandMadeIpc]:
    made = HandMadeIpc()
    yield made
    made.close()
