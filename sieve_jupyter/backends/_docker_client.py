"""Connecting to the Docker engine: one way for the Docker backend and for deployments.

docker-py opens its first connection inside the client's constructor (to ask the engine's API
version) and, when the engine's socket is there but nothing listens on it (a stopped dockerd),
drops that socket without closing it. So a Unix socket is tried here first, closed whatever
happens, and docker-py is only asked when something answers on it.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import docker
import docker.errors

from sieve_jupyter._errors import BackendError

__all__ = ["connect"]

_DEFAULT_SOCKET = "/var/run/docker.sock"


def connect(fix: str, **options: Any) -> docker.DockerClient:
    """A client of the engine `DOCKER_HOST` names (or the local socket), known to answer.

    Raises:
        BackendError: no engine answers; says why, then `fix`.
    """
    problem = _unix_socket_problem(os.environ.get("DOCKER_HOST", ""))
    if problem is not None:
        raise BackendError(f"backend='docker': cannot reach a Docker engine ({problem}). {fix}")
    client = None
    try:
        client = docker.from_env(**options)
        client.ping()
    except docker.errors.DockerException as exc:
        if client is not None:
            client.close()
        raise BackendError(
            f"backend='docker': cannot reach a Docker engine ({exc}). {fix}"
        ) from exc
    return client


def _unix_socket_problem(host: str) -> str | None:
    """Why nothing answers on the engine's Unix socket (None when it accepts a connection, or
    when the engine is reached another way: docker-py says why itself)."""
    if host and not host.startswith("unix://"):
        return None
    path = host.removeprefix("unix://") or _DEFAULT_SOCKET
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(5.0)
        try:
            probe.connect(path)
        except OSError as exc:
            return f"{path}: {exc.strerror or exc}"
    return None
