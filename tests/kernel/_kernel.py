"""Driving a real ipykernel over jupyter_client, as a notebook frontend does."""

from __future__ import annotations

import os
import queue
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_client.manager import KernelManager


@dataclass
class CellResult:
    """What one executed cell produced: its reply and the IOPub messages filed under it."""

    msg_id: str
    reply: dict[str, Any]
    messages: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.reply["content"]["status"] == "ok")

    @property
    def error(self) -> dict[str, Any] | None:
        return None if self.ok else self.reply["content"]

    def stream(self, name: str | None = None) -> str:
        return "".join(
            m["content"]["text"]
            for m in self.messages
            if m["msg_type"] == "stream" and (name is None or m["content"]["name"] == name)
        )

    def data(self, mime: str = "text/plain") -> list[str]:
        return [
            m["content"]["data"][mime]
            for m in self.messages
            if m["msg_type"] in ("execute_result", "display_data", "update_display_data")
            and mime in m["content"]["data"]
        ]

    @property
    def text(self) -> str:
        return self.stream() + "\n".join(self.data())


class KernelSession:
    """One running kernel; `run(code)` executes a cell and returns what it printed."""

    def __init__(self, manager: KernelManager) -> None:
        self.manager = manager
        self.client = manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)
        #: every IOPub message seen, whichever cell it belongs to
        self.log: list[dict[str, Any]] = []

    def submit(self, code: str) -> str:
        return str(self.client.execute(code, store_history=True))

    def collect(self, msg_id: str, timeout: float = 120) -> CellResult:
        deadline = time.monotonic() + timeout
        reply = self.client.get_shell_msg(timeout=timeout)
        while reply["parent_header"].get("msg_id") != msg_id:
            reply = self.client.get_shell_msg(timeout=max(1.0, deadline - time.monotonic()))
        result = CellResult(msg_id, reply)
        idle = False
        while not idle:
            self.drain(until=deadline, stop_at_idle_of=msg_id)
            idle = any(
                m["msg_type"] == "status"
                and m["content"]["execution_state"] == "idle"
                and m["parent_header"].get("msg_id") == msg_id
                for m in self.log
            )
        result.messages = [m for m in self.log if m["parent_header"].get("msg_id") == msg_id]
        return result

    def drain(self, until: float, stop_at_idle_of: str | None = None) -> None:
        while time.monotonic() < until:
            try:
                msg = self.client.get_iopub_msg(timeout=0.2)
            except queue.Empty:
                if stop_at_idle_of is None:
                    return
                continue
            self.log.append(msg)
            if (
                stop_at_idle_of is not None
                and msg["msg_type"] == "status"
                and msg["content"]["execution_state"] == "idle"
                and msg["parent_header"].get("msg_id") == stop_at_idle_of
            ):
                return
        if stop_at_idle_of is not None:
            raise TimeoutError(f"cell {stop_at_idle_of} did not go idle in time")

    def run(self, code: str, timeout: float = 120) -> CellResult:
        return self.collect(self.submit(code), timeout)

    def ok(self, code: str, timeout: float = 120) -> CellResult:
        result = self.run(code, timeout)
        if not result.ok:
            error = result.error or {}
            raise AssertionError(
                f"cell failed: {error.get('ename')}: {error.get('evalue')}\n"
                + "\n".join(error.get("traceback", []))
            )
        return result

    def messages_for(self, msg_id: str) -> list[dict[str, Any]]:
        return [m for m in self.log if m["parent_header"].get("msg_id") == msg_id]

    def close(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)


def start_kernel(cwd: Path) -> KernelSession:
    manager = KernelManager(kernel_name="python3")
    env = dict(os.environ)
    env.pop("PYTEST_CURRENT_TEST", None)
    manager.start_kernel(cwd=str(cwd), env=env)
    return KernelSession(manager)
