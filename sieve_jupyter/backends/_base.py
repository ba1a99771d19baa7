"""The small interface every backend implements: prepare an environment, start a worker.

A backend knows how to get a worker process running somewhere (a local process, a container, a
Ray actor) and how to stop it. Everything else — the protocol, dispatch, futures, restarts — is
the manager's job and is the same for every backend.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sieve_jupyter.spec import FunctionSpec

__all__ = ["Backend", "GpuAssignment", "WorkerLaunch", "WorkerProcess"]

#: Module run (``python -m``) to start a worker; see sieve_jupyter/runtime/worker.py.
WORKER_MODULE = "sieve_jupyter.runtime.worker"


@dataclass(frozen=True)
class GpuAssignment:
    """The devices a worker may use, as the manager's GPU allocator decided."""

    #: device indexes as the host numbers them (what ``CUDA_VISIBLE_DEVICES`` takes)
    device_indexes: tuple[int, ...]
    #: device UUIDs where known (Docker's ``device_requests`` accept them too)
    device_uuids: tuple[str, ...] = ()

    @property
    def visible_devices(self) -> str:
        return ",".join(str(i) for i in self.device_indexes)


@dataclass(frozen=True)
class WorkerLaunch:
    """Everything a backend needs to start one worker.

    The worker connects back to the manager through ``ipc_dir / "sock"`` (a listening Unix socket
    the manager owns) and authenticates with the secret in ``ipc_dir / "key"``. The directory is
    private (mode 0700); a container gets it bind-mounted.
    """

    spec: FunctionSpec
    worker_id: str
    ipc_dir: Path
    #: variables to set in the worker's environment (declared `sieve.Env` values included);
    #: never log them, never bake them into an image
    env: Mapping[str, str] = field(default_factory=dict)
    gpu: GpuAssignment | None = None
    #: labels identifying the owning kernel, function and spec (for containers, reapers)
    labels: Mapping[str, str] = field(default_factory=dict)


class WorkerProcess(abc.ABC):
    """A handle on one started worker (a process, a container, an actor)."""

    @property
    @abc.abstractmethod
    def description(self) -> str:
        """Short human text, e.g. ``"pid 1234"`` or ``"container 3f2a9c1b"``."""

    @abc.abstractmethod
    def poll(self) -> int | None:
        """The exit code if the worker has exited (negative: killed by that signal), else None."""

    @abc.abstractmethod
    def terminate(self, grace: float = 2.0) -> None:
        """Stop the worker: ask politely, kill after `grace` seconds, and clean up after it."""

    def details(self) -> dict[str, Any]:
        """Extra state for `%sieve ls` and the side panel (container id, image, ...)."""
        return {}


class Backend(abc.ABC):
    """Starts workers for function specs. One instance serves every function using it."""

    #: the name users select it by (``backend="local"``)
    name: str = ""

    def check(self, spec: FunctionSpec) -> list[str]:
        """Validate that this backend can honour `spec` before anything starts.

        Returns notes about options it cannot honour (shown to the user once); raises a
        `SieveError` subclass with the fix when the spec cannot run here at all.
        """
        return []

    def prepare(self, spec: FunctionSpec, log: Callable[[str], None]) -> None:
        """Make the environment ready (build an image, ...). Idempotent; `log` streams progress."""

    @abc.abstractmethod
    def start_worker(self, launch: WorkerLaunch) -> WorkerProcess:
        """Start one worker process that will connect back through ``launch.ipc_dir``."""

    def close(self) -> None:
        """Release what the backend holds (clients, reapers). Workers are stopped by the manager."""
