"""The kernel tier: a real ipykernel driven over jupyter_client (see _kernel.py)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from _kernel import KernelSession, start_kernel
from support import processes_under

from sieve_jupyter._errors import SieveWarning


@pytest.fixture
def kernel_session(tmp_path: Path) -> Iterator[KernelSession]:
    """A fresh kernel per test (workers and registrations do not leak between tests)."""
    session = start_kernel(tmp_path)
    try:
        yield session
    finally:
        session.close()


@pytest.fixture
def deploying_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[KernelSession]:
    """A kernel whose deployments go to a registry of this test's own; whatever it deployed
    is undeployed afterwards, and no process started from here may remain."""
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "jupyter-data"))
    monkeypatch.delenv("SIEVE_DEPLOYMENTS_DIR", raising=False)
    session = start_kernel(tmp_path)
    try:
        yield session
    finally:
        session.close()
        from sieve_jupyter.deploy import undeploy
        from sieve_jupyter.deploy._registry import LocalRegistry

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SieveWarning)
            left = LocalRegistry().entries()
        for key in sorted({f"{e['user']}/{e['name']}" for e in left}):
            undeploy(key, log=lambda line: None)
        assert left == []
        assert processes_under(tmp_path) == []
