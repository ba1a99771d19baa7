"""Connecting to the Docker engine (backends/_docker_client.py): an engine that does not
answer is a clear error, and nothing of the attempt is left open."""

from __future__ import annotations

import gc
import os
import socket
import warnings
from pathlib import Path

import pytest

pytest.importorskip("docker")

from sieve_jupyter._errors import BackendError  # noqa: E402
from sieve_jupyter.backends._docker_client import connect  # noqa: E402


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_socket_nobody_listens_on_says_so_and_leaks_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "docker.sock"
    with socket.socket(socket.AF_UNIX) as stopped:  # (the file stays: a stopped dockerd's)
        stopped.bind(str(path))
    monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
    before = _open_descriptors()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        with pytest.raises(BackendError) as raised:
            connect("Fix: start Docker.")
        gc.collect()  # (a socket dropped unclosed would warn here)
    assert str(path) in str(raised.value)
    assert "refused" in str(raised.value).lower()
    assert str(raised.value).endswith("Fix: start Docker.")
    assert _open_descriptors() == before


def test_a_missing_socket_names_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'absent.sock'}")
    with pytest.raises(BackendError, match="absent.sock"):
        connect("Fix: start Docker.")
