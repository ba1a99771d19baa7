"""The serve tier: bundles exported from notebooks, served by the real command on a free
loopback port, called with real HTTP clients (marker `serve`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from _servers import MAIN_CELLS, Server, notebook

from sieve_jupyter.bundle import export_notebook


@pytest.fixture(scope="session")
def main_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("main")
    path = notebook(MAIN_CELLS, work / "main.ipynb")
    export_notebook(path, work / "bundle")
    return work / "bundle"


@pytest.fixture(scope="session")
def main_server(main_bundle: Path) -> Iterator[Server]:
    """Two workers per function, every function of MAIN_CELLS."""
    server = Server(
        main_bundle, "--workers", "2", "--inline-file-bytes", "1000", env={"GREETING": "hi"}
    )
    yield server
    assert server.stop() == 0
