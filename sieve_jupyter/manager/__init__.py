"""The kernel-side manager: registry, jobs and futures, worker pools, GPU allocation, events."""

from __future__ import annotations

from sieve_jupyter.manager._async import as_completed, gather, wait
from sieve_jupyter.manager._events import Event, EventBus
from sieve_jupyter.manager._jobs import JobFuture, JobStatus
from sieve_jupyter.manager._manager import (
    Manager,
    Registration,
    get_manager,
    manager_created_hooks,
)
from sieve_jupyter.manager._record import FunctionRecord

__all__ = [
    "Event",
    "EventBus",
    "FunctionRecord",
    "JobFuture",
    "JobStatus",
    "Manager",
    "Registration",
    "as_completed",
    "gather",
    "get_manager",
    "manager_created_hooks",
    "wait",
]
