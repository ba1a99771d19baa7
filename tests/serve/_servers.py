"""Notebooks made for the serving tests, exported to bundles and served by `sieve-jupyter
serve` in a subprocess on a free loopback port (the real command, a real HTTP server)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import nbformat

ROOT = Path(__file__).resolve().parents[2]

#: the functions most serving tests call: one notebook, as a user would write it
MAIN_CELLS = [
    "import time\nimport pathlib\n\nimport sieve_jupyter as sieve",
    "%load_ext sieve_jupyter",
    '''@sieve.function(name="multiplier")
def multiply(x1: int, x2: int) -> int:
    """Multiply two integers."""
    return x1 * x2

print(multiply.run(2, 3))''',
    """%%sieve_model --name adder --title "Adds" --env GREETING=hello
import os
class Adder:
    def __setup__(self):
        print("setting up the adder")
        self.offset = 0
    def __predict__(self, x1: int, x2: int = 10) -> int:
        print("adding", x1, x2, os.environ["GREETING"])
        return x1 + x2 + self.offset""",
    """@sieve.function(name="sleeper")
def sleeper(seconds: float, tag: str = "") -> str:
    time.sleep(seconds)
    return tag""",
    """from typing import Iterator

@sieve.function(name="counter")
def counter(n: int) -> Iterator[int]:
    for i in range(n):
        print(f"item {i}")
        yield i * i""",
    """class Unhappy(Exception):
    pass

@sieve.function(name="fails", restart_on_error=False)
def fails(message: str) -> str:
    raise Unhappy(message)""",
    """@sieve.function(name="file-size")
def file_size(document: sieve.File) -> int:
    return len(pathlib.Path(document.path).read_bytes())""",
    """@sieve.function(name="make-file")
def make_file(size: int) -> sieve.File:
    path = pathlib.Path(f"/tmp/sieve-test-out-{size}.bin")
    path.write_bytes(b"x" * size)
    return sieve.File(str(path))""",
    "multiply(2, 3)",
]


def notebook(cells: list[str], path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    nbformat.write(nb, path)
    return path


#: the `sieve-jupyter` console script of this environment
SCRIPT = Path(sys.executable).with_name("sieve-jupyter")


class Server:
    """`sieve-jupyter serve BUNDLE` in a subprocess; `url`, `client`, `stop()`.

    `command` is how the CLI is started (default ``python -m sieve_jupyter.cli``; `SCRIPT` is
    the installed console script)."""

    def __init__(
        self,
        bundle: Path,
        *args: str,
        env: dict[str, str] | None = None,
        wait_ready: bool = True,
        command: list[str] | None = None,
    ) -> None:
        self.port_file = bundle.parent / f"{bundle.name}-{uuid.uuid4().hex[:8]}.port"
        self.port_file.unlink(missing_ok=True)
        environment = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        command = command or [sys.executable, "-m", "sieve_jupyter.cli"]
        self.process = subprocess.Popen(
            [
                *command,
                "serve",
                str(bundle),
                "--port",
                "0",
                "--port-file",
                str(self.port_file),
                *args,
            ],
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while not self.port_file.exists():
            if self.process.poll() is not None:
                raise AssertionError(f"the server exited: {self.process.stdout.read()}")
            if time.monotonic() > deadline:
                raise AssertionError("the server did not report its port")
            time.sleep(0.05)
        self.port = int(self.port_file.read_text())
        self.url = f"http://127.0.0.1:{self.port}"
        headers = {}
        token = (env or {}).get("SIEVE_SERVE_TOKEN")
        if token:
            headers["authorization"] = f"Bearer {token}"
        self.client = httpx.Client(base_url=self.url, timeout=60, headers=headers)
        if wait_ready:
            self.wait_for("READY")

    def health(self) -> dict[str, Any]:
        return dict(self.client.get("/health-check").json())

    def wait_for(self, *statuses: str, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            health = self.health()
            if health["status"] in statuses:
                return health
            if time.monotonic() > deadline:
                raise AssertionError(f"health stayed {health}")
            time.sleep(0.05)

    def predict(
        self, body: dict[str, Any], path: str = "/predictions", **kwargs: Any
    ) -> httpx.Response:
        return self.client.post(
            path,
            content=json.dumps(body),
            headers={"content-type": "application/json", **kwargs.pop("headers", {})},
            **kwargs,
        )

    def stop(self) -> int:
        """SIGTERM, as a container runtime or supervisor stops it; returns the exit code."""
        self.client.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        if self.process.stdout is not None:
            self.output = self.process.stdout.read()
            self.process.stdout.close()
        self.port_file.unlink(missing_ok=True)
        return int(self.process.returncode)
