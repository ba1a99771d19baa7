"""The kernel-side manager: registry, jobs and futures, worker pools, GPU allocation, events."""

from __future__ import annotations

from sieve_jupyter.manager._events import Event, EventBus
from sieve_jupyter.manager._jobs import JobFuture, JobStatus
from sieve_jupyter.manager._manager import (
    FunctionRecord,
    Manager,
    SieveWarning,
    get_manager,
    manager_created_hooks,
)

__all__ = [
    "Event",
    "EventBus",
    "FunctionRecord",
    "JobFuture",
    "JobStatus",
    "Manager",
    "SieveWarning",
    "get_manager",
    "manager_created_hooks",
]
