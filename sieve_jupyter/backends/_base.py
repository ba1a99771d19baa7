"""The small interface every backend implements: prepare an environment, start a worker.

A backend knows how to get a worker running somewhere (a local process, a container, a Ray
actor) and how to stop it. Everything else — dispatch, futures, restarts — is the manager's job
and is the same for every backend. A worker is reached one of two ways:

- *connected* (`start_worker`): a process that connects back to the kernel's Unix socket and
  speaks the frame protocol of `runtime/protocol.py` (local processes, containers);
- *linked* (`start_link`, with `links_workers` set): the backend carries the worker's messages
  itself (a Ray actor, which may run on a machine that cannot reach the kernel's socket). A
  `WorkerLink` speaks the same vocabulary (`runtime/messages.py`) over the backend's transport.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from sieve_jupyter.runtime.protocol import ChannelClosed

if TYPE_CHECKING:
    from sieve_jupyter.runtime.messages import Load, Message
    from sieve_jupyter.spec import FunctionSpec

__all__ = [
    "Backend",
    "CallBatch",
    "GpuAssignment",
    "LinkLaunch",
    "LinkReceiver",
    "Unsendable",
    "WorkerLaunch",
    "WorkerLink",
    "WorkerProcess",
    "image_only_settings",
]

#: calls handed to a worker link at once (`WorkerLink.send_calls`): (job, args, kwargs) each
CallBatch = Sequence[tuple[str, tuple[Any, ...], dict[str, Any]]]
#: told of a call whose arguments cannot be sent, and why (nothing of it was sent)
Unsendable = Callable[[str, Exception], None]

#: Module run (``python -m``) to start a worker; see sieve_jupyter/runtime/worker.py.
WORKER_MODULE = "sieve_jupyter.runtime.worker"


def image_only_settings(spec: FunctionSpec) -> list[str]:
    """The settings of `spec`'s environment that only a built image honours, described (e.g.
    ``"run_commands ['make']"``): a backend that runs workers in an environment it does not
    build (the kernel's, a Ray cluster's) reports them rather than dropping them silently."""
    from sieve_jupyter.spec import DEFAULT_CUDA_VERSION

    env = spec.environment
    settings = []
    if env.system_packages:
        settings.append(f"system_packages {list(env.system_packages)}")
    if env.run_commands:
        settings.append(f"run_commands {list(env.run_commands)}")
    if env.base_image:
        settings.append(f"base_image {env.base_image!r}")
    # The spec fills in a default CUDA version for every GPU function; only one the user
    # chose is worth a note (a warning on every GPU function would be noise).
    if (
        env.cuda_version
        and env.cuda_version != DEFAULT_CUDA_VERSION
        and spec.gpu is not None
        and not spec.gpu.is_cpu
    ):
        settings.append(f"cuda_version {env.cuda_version!r}")
    return settings


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

    @property
    def host_pid(self) -> int | None:
        """The worker's process id as this process sees it, when this process may set the
        worker's CPU affinity (a child process; not a container, whose CPUs its engine
        decides); None otherwise."""
        return None


@dataclass(frozen=True)
class LinkLaunch:
    """Everything a linking backend needs to start one worker."""

    spec: FunctionSpec
    worker_id: str
    #: variables to set in the worker's environment (declared `sieve.Env` values included);
    #: never log them, never store them where the engine shows them
    env: Mapping[str, str] = field(default_factory=dict)
    #: labels identifying the owning kernel, function and spec
    labels: Mapping[str, str] = field(default_factory=dict)
    #: seconds after which a worker still waiting for the engine is reported as waiting
    start_timeout: float = 120.0


class LinkReceiver(Protocol):
    """The kernel's side of a linked worker: where its link delivers what the worker says.

    The link calls it from threads of its own (never an engine's callback thread, since the
    kernel runs user callbacks from here), one call at a time per worker.
    """

    def receive(self, messages: Sequence[Message], held: Collection[str] = ()) -> None:
        """Messages from the worker (`runtime/messages.py`), in the order it sent them.
        `held`: the jobs among them whose results hold memory the engine keeps while they
        live (Ray's object store), which the job history then holds only weakly, as it does
        results rebuilt on a worker's shared memory."""

    def log(self, stream: str, text: str) -> None:
        """A note about the worker for whoever waits for it (e.g. still waiting for the
        engine to place it)."""

    def link_closed(self, reason: str, *, blame_running: bool) -> None:
        """The worker is gone, for `reason`; its running job is to blame unless not
        `blame_running` (it died idle, or it was stopped). Called once, last."""


class WorkerLink(abc.ABC):
    """The kernel's line to one linked worker (a Ray actor), carrying the messages of
    `runtime/messages.py`: calls, cancels, replies and swaps to it; everything it says back
    goes to its `LinkReceiver`. The worker runs calls one at a time, in the order sent."""

    @property
    @abc.abstractmethod
    def description(self) -> str:
        """Short human text, e.g. ``"actor 3f2a9c1b on 10.0.0.2"``."""

    @property
    def pid(self) -> int | None:
        """The worker's process id on its machine, when known."""
        return None

    def details(self) -> dict[str, Any]:
        """Extra state for `%sieve ls` and the side panel (node, actor id, ...)."""
        return {}

    @abc.abstractmethod
    def wait_started(self) -> None:
        """Block until the engine placed the worker and it answers.

        Raises:
            BackendError: it could not be started, or was terminated meanwhile.
            PythonVersionMismatchError: its Python cannot unpickle the kernel's code.
        """

    @abc.abstractmethod
    def load(self, load: Load) -> None:
        """Give the started worker its code; it answers `Ready` or `SetupFailed`. From now
        on the link reports the worker's end to its receiver (`link_closed`)."""

    @abc.abstractmethod
    def send_call(
        self, job: str, args: tuple[Any, ...], kwargs: dict[str, Any], *, waited: bool = False
    ) -> None:
        """Send one call, after the ones sent before it. `waited`: the sending thread waits
        for this call's outcome (a `.run()`) and calls `settle_here(job)` next.

        Raises:
            ChannelClosed: the worker is gone (nothing was sent).
            Exception: the arguments cannot be sent (nothing was sent).
        """

    def send_calls(
        self, calls: CallBatch, unsendable: Unsendable, *, waited: str | None = None
    ) -> None:
        """Send several calls (job, args, kwargs), in order, after the ones sent before; a
        link may send a burst as fewer messages. A call whose arguments cannot be sent is
        handed to `unsendable(job, error)` at once (nothing of it is sent) and the others go
        on. `waited`: the job whose outcome the sending thread waits for (see `send_call`).
        By default, `send_call` each.

        Raises:
            ChannelClosed: the worker is gone (the calls not sent yet never will be).
        """
        for job, args, kwargs in calls:
            try:
                self.send_call(job, args, kwargs, waited=job == waited)
            except ChannelClosed:
                raise
            except Exception as exc:  # noqa: BLE001 - its arguments cannot be sent
                unsendable(job, exc)

    def settle_here(self, job: str, *, wait: bool = True) -> None:
        """Called by the thread that sent `job` with `waited` and will wait for it: the link
        may wait for its outcome and deliver it on this thread (sparing a hand-off between
        threads, which costs more than a fast call). By default, and with `wait=False` (the
        caller was interrupted), the outcome arrives as usual and this returns at once.
        Afterwards, the link's own threads deliver whatever was not delivered here."""

    @abc.abstractmethod
    def cancel(self, job: str) -> None:
        """Skip `job` if it has not started, interrupt it if it runs; answered by `Skipped`,
        `Cancelled` or its outcome, if it ended first."""

    @abc.abstractmethod
    def reply(self, request: int, ok: bool, value: Any) -> None:
        """Answer the worker's `UpstreamCall` number `request`."""

    @abc.abstractmethod
    def swap(self, swap: int, payload: bytes, sources: dict[str, list[str]]) -> None:
        """New code for the live instance, after the calls already sent.

        Raises:
            ChannelClosed: the worker is gone.
        """

    @abc.abstractmethod
    def terminate(self) -> None:
        """Stop the worker now; its receiver hears `link_closed`. Safe to call twice."""


class Backend:
    """Starts workers for function specs. One instance serves every function using it.

    A backend overrides `start_worker` (connected workers) or `start_link` (linked ones).
    """

    #: the name users select it by (``backend="local"``)
    name: str = ""
    #: workers are reached through a `WorkerLink` (`start_link`) rather than the kernel's
    #: socket (`start_worker`)
    links_workers: bool = False
    #: the backend's engine decides which GPU a worker gets (a cluster scheduler); the
    #: manager's allocator of this machine's cards stays out of it
    allocates_gpus: bool = False

    def check(self, spec: FunctionSpec) -> list[str]:
        """Validate that this backend can honour `spec` before anything starts.

        Returns notes about options it cannot honour (shown to the user once); raises a
        `SieveError` subclass with the fix when the spec cannot run here at all.
        """
        return []

    def prepare(self, spec: FunctionSpec, log: Callable[[str], None]) -> None:
        """Make the environment ready (build an image, ...). Idempotent; `log` streams progress."""

    def check_workers(self, spec: FunctionSpec, workers: int) -> None:
        """Check, before any job is queued, that `workers` workers of `spec` can be placed
        (a backend whose engine `allocates_gpus` checks their devices here).

        Raises:
            GpuUnavailableError: naming the request and what there is.
        """

    def start_worker(self, launch: WorkerLaunch) -> WorkerProcess:
        """Start one worker process that will connect back through ``launch.ipc_dir``."""
        raise NotImplementedError(f"the {self.name} backend links its workers (start_link)")

    def start_link(self, launch: LinkLaunch, receiver: LinkReceiver) -> WorkerLink:
        """Ask the engine for one linked worker; returns its link at once (`wait_started`
        waits for it), so that it can be terminated while it is being placed.

        Raises:
            BackendError: the engine refused it.
        """
        raise NotImplementedError(f"the {self.name} backend connects its workers (start_worker)")

    def close(self) -> None:
        """Release what the backend holds (clients, reapers). Workers are stopped by the manager."""
