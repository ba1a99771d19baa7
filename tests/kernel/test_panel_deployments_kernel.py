"""The panel's Deployments section over a real ipykernel's comm: a deployment made in the kernel
and one made from a terminal are listed with their health (never a token), the list follows
on its own, and undeploy through the panel removes everything (or says, in the result, why
it could not)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import nbformat
from _kernel import KernelSession
from support import processes_under

from sieve_jupyter.jupyter._channel_protocol import COMM_TARGET, PROTOCOL_VERSION

TOKEN = "panel-must-never-see-this-token"
ROOT = Path(__file__).resolve().parents[2]

MODEL = """%%sieve_model --name adder
class Adder:
    def __setup__(self):
        self.offset = 100
    def __predict__(self, x1: int, x2: int) -> int:
        return x1 + x2 + self.offset"""

TERMINAL_CELLS = [
    "import sieve_jupyter as sieve",
    '@sieve.function(name="echo")\ndef echo(text: str) -> str:\n    return text',
]


class PanelComm:
    """What the JupyterLab panel does on the kernel's comm, over jupyter_client."""

    def __init__(self, kernel: KernelSession) -> None:
        self.kernel = kernel
        self.comm_id = uuid.uuid4().hex
        self.seen = 0  # messages of `received` already looked at by `wait_for`

    def _send(self, msg_type: str, content: dict[str, Any]) -> None:
        client = self.kernel.client
        client.shell_channel.send(client.session.msg(msg_type, content))

    def open(self, data: dict[str, Any]) -> None:
        self._send("comm_open", {"comm_id": self.comm_id, "target_name": COMM_TARGET, "data": data})

    def send(self, data: dict[str, Any]) -> None:
        self._send("comm_msg", {"comm_id": self.comm_id, "data": data})

    def received(self) -> list[dict[str, Any]]:
        return [
            m["content"]["data"]
            for m in self.kernel.log
            if m["msg_type"] == "comm_msg" and m["content"].get("comm_id") == self.comm_id
        ]

    def wait_for(self, kind: str, check: Any = None, timeout: float = 120) -> dict[str, Any]:
        """The next message of type `kind` (after the last one returned) that passes `check`."""
        deadline = time.monotonic() + timeout
        while True:
            messages = self.received()
            for index in range(self.seen, len(messages)):
                message = messages[index]
                if message.get("type") == kind and (check is None or check(message)):
                    self.seen = index + 1
                    return message
            if time.monotonic() > deadline:
                raise AssertionError(f"no {kind} message came; the panel got: {messages}")
            self.kernel.drain(until=time.monotonic() + 0.5)


def _listed(message: dict[str, Any]) -> list[str]:
    return sorted(row["name"] for row in message["deployments"])


def _deploy_from_a_terminal(tmp_path: Path) -> None:
    book = nbformat.v4.new_notebook()
    book.cells = [nbformat.v4.new_code_cell(cell) for cell in TERMINAL_CELLS]
    path = tmp_path / "echo.ipynb"
    nbformat.write(book, path)
    done = subprocess.run(
        [sys.executable, "-m", "sieve_jupyter.cli", "deploy", str(path), "--user", "alice"],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"


def test_the_panel_lists_deployments_with_health_and_undeploys_them(
    deploying_kernel: KernelSession, tmp_path: Path
) -> None:
    kernel = deploying_kernel
    kernel.ok(
        "import sieve_jupyter as sieve\n%load_ext sieve_jupyter\nsieve.configure(user='alice')"
    )
    kernel.ok(MODEL)
    deployed = kernel.ok(f"print(Adder.deploy(token={TOKEN!r}))", timeout=300)
    assert "Deployed alice/adder version 1-" in deployed.stream()

    panel = PanelComm(kernel)
    panel.open({"v": PROTOCOL_VERSION, "type": "subscribe", "job_limit": 10,
                "watch_deployments": True})  # fmt: skip
    snapshot = panel.wait_for("snapshot")
    assert snapshot["features"]["deployments"] is True
    listed = panel.wait_for("deployments")
    assert listed["user"] == "alice" and listed["error"] is None
    (row,) = listed["deployments"]
    assert row["name"] == "alice/adder" and row["version"].startswith("1-")
    assert row["backend"] == "local" and row["state"] == "serving"
    assert row["health"] == "READY" and row["ready_workers"] == 1 and row["workers"] == 1
    assert row["url"].startswith("http://127.0.0.1:") and row["error"] is None
    assert isinstance(row["started_at"], float)

    # Started elsewhere: the list follows without the panel asking.
    _deploy_from_a_terminal(tmp_path)
    following = panel.wait_for("deployments", lambda m: len(m["deployments"]) == 2)
    assert _listed(following) == ["alice/adder", "alice/echo"]

    # A hidden section is not polled; shown again, the list comes at once.
    panel.send({"v": PROTOCOL_VERSION, "type": "watch", "deployments": False})
    panel.send({"v": PROTOCOL_VERSION, "type": "watch", "deployments": True})
    assert _listed(panel.wait_for("deployments")) == ["alice/adder", "alice/echo"]

    for name in ("alice/adder", "alice/echo"):
        request = f"undeploy:{name}"
        panel.send({"v": PROTOCOL_VERSION, "type": "action", "request_id": request,
                    "action": "undeploy", "target": name})  # fmt: skip
        result = panel.wait_for("result", lambda m, r=request: m["request_id"] == r)
        assert result["ok"] is True and result["error"] is None
    assert panel.wait_for("deployments", lambda m: not m["deployments"])["error"] is None

    # Undeploying what is already gone is an error in the result, not a crash.
    panel.send({"v": PROTOCOL_VERSION, "type": "action", "request_id": "again",
                "action": "undeploy", "target": "alice/adder"})  # fmt: skip
    again = panel.wait_for("result", lambda m: m["request_id"] == "again")
    assert again["ok"] is False and "FunctionNotFoundError" in again["error"]
    assert "no deployment alice/adder is running" in again["error"]

    # Nothing is left: no server process, no registry entry; and no message held the token.
    assert processes_under(tmp_path / "jupyter-data") == []
    assert kernel.ok("print(sieve.deployments())").stream().strip().startswith("No deployments")
    assert TOKEN not in repr(panel.received())
