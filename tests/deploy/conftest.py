"""The deployment tier: deployments started for real (detached `sieve-jupyter serve`
processes on loopback ports), found by name from this process and from other ones.

Every test gets its own Jupyter data directory, so the user's real registry is never touched,
and leaves nothing behind: whatever it deployed is undeployed, and no process that served from
its directory may still run (marker `serve`: a real HTTP server).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _deployed import Deploy, exported
from support import processes_under

from sieve_jupyter._config import config, configure
from sieve_jupyter._errors import SieveWarning


@pytest.fixture(autouse=True)
def deployments_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A Jupyter data directory of this test's own; afterwards every deployment in it is
    undeployed and no process started from it may remain."""
    from sieve_jupyter.deploy._registry import LocalRegistry

    home = tmp_path / "jupyter-data"
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(home))
    monkeypatch.delenv("SIEVE_DEPLOYMENTS_DIR", raising=False)
    monkeypatch.delenv("SIEVE_DEPLOYMENTS_READONLY", raising=False)
    user = config.user
    yield home
    configure(user=user)
    registry = LocalRegistry()
    root = registry.root
    with warnings.catch_warnings():
        # (a test that killed a server has already checked the warning about it)
        warnings.simplefilter("ignore", SieveWarning)
        entries = registry.entries()
    from sieve_jupyter.deploy import undeploy

    for key in sorted({f"{e['user']}/{e['name']}" for e in entries}):
        undeploy(key, log=lambda line: None)
    left = registry.entries() if root.exists() else []
    stray = processes_under(tmp_path)
    for pid in stray:
        with_suppressed_kill(pid)
    assert not left, f"registry entries left: {left}"
    assert not stray, f"processes left running: {stray}"
    if root.exists():
        assert sorted(p.name for p in root.iterdir()) in ([], [".lock"], [".lock", "registry.json"])


def with_suppressed_kill(pid: int) -> None:
    import signal

    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


@pytest.fixture
def deploy_cells() -> Deploy:
    """``deploy_cells(cells, path, backend="local", **options)``: deploy a notebook made of
    `cells` (written at `path`) with one worker, quietly, as ``sieve-jupyter deploy`` does;
    `options` are `DeployOptions` fields (timeout, host, ...). Returns the DeployResult."""
    from sieve_jupyter.deploy import DeployOptions, deploy_bundle

    def deploy(cells: list[str], path: Path, backend: str = "local", **options: Any) -> Any:
        bundle = exported(cells, path, backend=backend)
        options.setdefault("workers", 1)
        return deploy_bundle(
            bundle.files,
            bundle.functions,
            bundle.default,
            DeployOptions(backend=backend, **options),
            log=lambda line: None,
        )

    return deploy
