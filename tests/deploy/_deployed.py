"""Helpers of the deployment tier: notebooks to deploy, scripts run as other processes, and
the processes a test left behind."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import nbformat

ROOT = Path(__file__).resolve().parents[2]


def adder_cells(offset: int = 0, setup: str = "", delay: float = 0.0) -> list[str]:
    """A notebook defining the model ``adder`` (x1 + x2 + offset) and the function
    ``doubler``, which calls the deployment ``alice/adder`` by name (a chained call)."""
    return [
        "import time\n\nimport sieve_jupyter as sieve",
        f"OFFSET = {offset}\nDELAY = {delay}",
        textwrap.dedent(f"""\
            @sieve.Model(name="adder")
            class Adder:
                def __setup__(self):
                    print("setting up the adder")
                    {setup or "pass"}
                    self.offset = OFFSET

                def __predict__(self, x1: int, x2: int) -> int:
                    time.sleep(DELAY)
                    return x1 + x2 + self.offset
        """),
    ]


def notebook(cells: list[str], path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    nbformat.write(nb, path)
    return path


def exported(cells: list[str], path: Path, backend: str = "local") -> Any:
    """The bundle files of a notebook made of `cells` (not written anywhere), for `backend`
    (a Docker deployment's image is built as the Docker backend builds)."""
    from sieve_jupyter.bundle import export_notebook
    from sieve_jupyter.deploy._deploy import _export_options

    return export_notebook(notebook(cells, path), None, **_export_options(backend))


def run_script(source: str, path: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run `source` as ``python path`` in a process of its own (this test's environment)."""
    path.write_text(textwrap.dedent(source))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=path.parent,
    )
    assert done.returncode == 0, f"{path.name} failed:\n{done.stdout}\n{done.stderr}"
    return done


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "sieve_jupyter.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
