"""Helpers of the deployment tier: notebooks to deploy, scripts run as other processes, and
the processes a test left behind."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
from support import script_env

#: the `deploy_cells` fixture: ``deploy_cells(cells, path, backend="local", **options)``
Deploy = Callable[..., Any]

_DEPLOY_SCRIPT = """\
import sieve_jupyter as sieve

@sieve.Model(name="adder")
class Adder:
    def __setup__(self):
        print("setting up the adder")

    def __predict__(self, x1: int, x2: int) -> int:
        return x1 + x2

if __name__ == "__main__":
    sieve.configure(user="{user}")
    print(Adder.deploy({options}))
"""

_CALLER = """\
import json
import sieve_jupyter as sieve

adder = sieve.function.get("{user}/adder")
print(json.dumps({{"run": adder.run(1, 2), "push": adder.push(2, 3).result(),
                  "version": adder.version}}))
"""


def deploy_script(user: str, options: str = "") -> str:
    """A script that defines the model ``adder`` (x1 + x2) and deploys it as `user`, with
    `options` (Python keywords, e.g. ``backend="docker"``)."""
    return _DEPLOY_SCRIPT.format(user=user, options=options)


def caller_script(user: str) -> str:
    """A script that calls ``user/adder`` by name and prints run, push and the version."""
    return _CALLER.format(user=user)


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


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sieve_jupyter.cli", *args],
        env=script_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class ClientLoop:
    """Clients calling ``handle(1, 2)`` in a loop from threads of their own (``run`` for each
    False in `pushes`, ``push(...).result()`` for each True) while the ``with`` block runs,
    keeping every result and every failure (the failures are the finding)."""

    def __init__(self, handle: Any, pushes: tuple[bool, ...] = (False, True)) -> None:
        self.handle = handle
        self.results: list[int] = []
        self.failures: list[BaseException] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, args=(p,)) for p in pushes]

    def _loop(self, push: bool) -> None:
        while not self._stop.is_set():
            try:
                self.results.append(
                    self.handle.push(1, 2).result() if push else self.handle.run(1, 2)
                )
            except BaseException as exc:  # noqa: BLE001 - every failure is the finding
                self.failures.append(exc)

    def wait_for(self, count: int) -> None:
        """Wait until `count` calls in all have answered."""
        while len(self.results) < count:
            time.sleep(0.05)

    def __enter__(self) -> ClientLoop:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)
