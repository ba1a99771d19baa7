"""A process identity that survives pid reuse: host, boot id, pid and start time.

The Docker reaper labels containers with their kernel's identity, and the local deployment
registry records each server's: a pid alone is not enough, because after its process dies the
number is handed to the next process that starts (and a reboot resets every pid).
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ProcessIdentity", "boot_id", "start_ticks"]


def boot_id() -> str:
    """This boot of the machine ("-" where the kernel does not say)."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "-"


def start_ticks(pid: int) -> str:
    """The process's start time in clock ticks since boot; "" when no such process runs (or
    it has exited and waits to be reaped: a zombie), "-" where /proc is missing."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return ""  # no such process
    except OSError:
        return "-"
    # the command name (field 2) may hold spaces and parentheses: split after its last ')'
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        # exited; its parent has not collected it yet (an orphan's parent may never do so)
        return ""
    return fields[19]  # field 22 of the full line


@dataclass(frozen=True)
class ProcessIdentity:
    """Who a process is: ``host/boot_id/pid/start_ticks``."""

    host: str
    boot_id: str
    pid: int
    start_ticks: str

    @property
    def label(self) -> str:
        return f"{self.host}/{self.boot_id}/{self.pid}/{self.start_ticks}"

    @classmethod
    def parse(cls, label: str) -> ProcessIdentity | None:
        parts = label.split("/")
        if len(parts) != 4 or not parts[2].isdigit():
            return None
        return cls(parts[0], parts[1], int(parts[2]), parts[3])

    @classmethod
    def of(cls, pid: int) -> ProcessIdentity:
        """The identity of the process `pid` of this machine, as it is now."""
        return cls(socket.gethostname(), boot_id(), pid, start_ticks(pid) or "-")

    @classmethod
    def current(cls) -> ProcessIdentity:
        """The identity of this process."""
        return cls.of(os.getpid())

    def is_alive(self) -> bool:
        """Whether this process still runs. Only meaningful for processes of this host."""
        if self.boot_id != boot_id():
            return False  # the machine rebooted since
        ticks = start_ticks(self.pid)
        if ticks == "":
            return False
        if ticks == "-" or self.start_ticks == "-":
            # no /proc here: fall back to "some process has this pid"
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return False
            except PermissionError:
                return True
            return True
        return ticks == self.start_ticks

    def wait_gone(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the process to end; returns whether it has."""
        deadline = time.monotonic() + timeout
        while self.is_alive():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True
