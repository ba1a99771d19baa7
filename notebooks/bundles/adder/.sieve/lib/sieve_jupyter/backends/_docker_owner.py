"""Who owns a container, and whether that owner is still alive: the basis of the reaper.

Every container is labelled with its owner's host, boot id, pid and process start time. A
container whose owner process is gone (or was a different process with a recycled pid, or ran
before a reboot) on this same host was left behind by a kernel that died, and is removed.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sieve_jupyter.build import LABEL_PREFIX

__all__ = ["OWNER_LABEL", "MANAGED_LABEL", "Owner", "find_dead_owned", "current_owner"]

#: set on every container sieve-jupyter starts (the reaper only ever looks at these)
MANAGED_LABEL = f"{LABEL_PREFIX}.managed"
#: ``host/boot_id/pid/start_ticks`` of the kernel process that started the container
OWNER_LABEL = f"{LABEL_PREFIX}.owner"


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "-"


def _start_ticks(pid: int) -> str:
    """The process's start time in clock ticks since boot ("-" where /proc is missing)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return ""  # no such process
    except OSError:
        return "-"
    # the command name (field 2) may hold spaces and parentheses: split after its last ')'
    fields = stat.rsplit(")", 1)[1].split()
    return fields[19]  # field 22 of the full line


@dataclass(frozen=True)
class Owner:
    """A kernel process identity that survives pid reuse."""

    host: str
    boot_id: str
    pid: int
    start_ticks: str

    @property
    def label(self) -> str:
        return f"{self.host}/{self.boot_id}/{self.pid}/{self.start_ticks}"

    @classmethod
    def parse(cls, label: str) -> Owner | None:
        parts = label.split("/")
        if len(parts) != 4 or not parts[2].isdigit():
            return None
        return cls(parts[0], parts[1], int(parts[2]), parts[3])

    def is_alive(self) -> bool:
        """Whether this owner still runs. Only meaningful for owners on this host."""
        if self.boot_id != _boot_id():
            return False  # the machine rebooted since
        ticks = _start_ticks(self.pid)
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


def current_owner() -> Owner:
    """The identity of this process."""
    pid = os.getpid()
    return Owner(socket.gethostname(), _boot_id(), pid, _start_ticks(pid) or "-")


def find_dead_owned(containers: list[dict[str, Any]], me: Owner) -> list[str]:
    """Ids of `containers` (engine list entries with ``Id`` and ``Labels``) whose owner ran on
    this host and is gone. Containers of other hosts sharing the engine are left alone."""
    dead: list[str] = []
    for container in containers:
        labels = container.get("Labels") or {}
        owner = Owner.parse(labels.get(OWNER_LABEL, ""))
        if owner is None or owner.host != me.host or owner == me:
            continue
        if not owner.is_alive():
            dead.append(str(container["Id"]))
    return dead
