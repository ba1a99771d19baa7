"""Who owns a container, and whether that owner is still alive: the basis of the reaper.

Every container is labelled with its owner's host, boot id, pid and process start time. A
container whose owner process is gone (or was a different process with a recycled pid, or ran
before a reboot) on this same host was left behind by a kernel that died, and is removed.
"""

from __future__ import annotations

from typing import Any

from sieve_jupyter.backends._identity import ProcessIdentity
from sieve_jupyter.build import LABEL_PREFIX

__all__ = ["OWNER_LABEL", "MANAGED_LABEL", "Owner", "find_dead_owned", "current_owner"]

#: set on every container sieve-jupyter starts (the reaper only ever looks at these)
MANAGED_LABEL = f"{LABEL_PREFIX}.managed"
#: ``host/boot_id/pid/start_ticks`` of the kernel process that started the container
OWNER_LABEL = f"{LABEL_PREFIX}.owner"


#: the identity of a kernel process (see `_identity`)
Owner = ProcessIdentity


def current_owner() -> Owner:
    """The identity of this process."""
    return ProcessIdentity.current()


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
