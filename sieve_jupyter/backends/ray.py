"""The Ray backend: each worker is a Ray actor on a cluster, reached through Ray itself.

    sieve.configure(backend="ray", ray_address="ray://head:10001")   # or backend="ray" on one

A worker is one actor (`_ray_actor.SieveWorker`) that loads the function or model by value and
runs `__setup__` once; calls are actor calls, sent in order (`_ray_link.RayLink`). A Ray actor on
another node cannot reach the kernel's Unix socket (and with Ray Client the kernel is outside the
cluster), so workers are *linked* (`backends.WorkerLink`), not connected: the pool, its queue,
futures, restarts and crash handling are the same as for local workers. What reaches a busy
worker (cancels, answers to its calls to other functions) and what a long job says while it runs
go through one small mailbox actor per kernel (`_ray_hub.SieveHub`), polled by a thread here.

The cluster needs only Ray, the SDK's small dependencies and the kernel's Python version: this
package's runtime and cloudpickle travel with the kernel's Ray job (`runtime_env["py_modules"]`).
The spec's mapping onto actor options is in `_ray_options.py`. A function whose environment only
an image honours runs, with `ray_image_registry` set, in the image the Docker backend builds and
pushes for it (`DockerBackend.publish`), as the actors' `image_uri`. Actors belong to the
kernel's Ray job: they end with the kernel. This module and its `_ray_*` helpers are the only
ones that talk to Ray.
"""

from __future__ import annotations

import atexit
import logging
import re
import threading
import uuid
from typing import TYPE_CHECKING, Any

import ray
import ray.exceptions
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from sieve_jupyter._config import config
from sieve_jupyter._errors import BackendError, GpuUnavailableError
from sieve_jupyter.backends._base import Backend, LinkLaunch, LinkReceiver
from sieve_jupyter.backends._ray_actor import SieveWorker
from sieve_jupyter.backends._ray_grants import delete_grants, grant_key, read_grant, sweep_grants
from sieve_jupyter.backends._ray_hub import SieveHub
from sieve_jupyter.backends._ray_link import RayLink
from sieve_jupyter.backends._ray_options import (
    actor_options,
    infeasibility,
    needs_built_image,
    package_modules,
    spread_node,
    unsupported_notes,
)
from sieve_jupyter.backends._ray_wire import loads

if TYPE_CHECKING:
    from collections.abc import Callable

    from sieve_jupyter.backends.docker import DockerBackend
    from sieve_jupyter.spec import FunctionSpec

__all__ = ["RayBackend"]

#: seconds one long poll of the hub waits for workers to post something
_COLLECT_SECONDS = 10.0
#: files of the shipped packages that only this machine needs
_EXCLUDES = ["__pycache__", "*.pyc"]


class RayBackend(Backend):
    """Runs each worker as a Ray actor on the cluster `sieve.config.ray_address` names."""

    name = "ray"
    links_workers = True
    allocates_gpus = True

    def __init__(self) -> None:
        self._lock = threading.RLock()
        #: held while the backend's threads hand Ray a call (see `alive`)
        self.lock = self._lock
        self._connected = False
        self._owns_ray = False
        self._closed = False
        self._hub: Any = None
        self._hub_name = f"sieve-hub-{uuid.uuid4().hex[:12]}"
        self._namespace: str | None = None
        self._links: dict[str, RayLink] = {}
        #: worker id -> (its function's name, the node the backend chose for it)
        self._placed: dict[str, tuple[str, str]] = {}
        self._worker_class: Any = None
        self._collector: threading.Thread | None = None
        #: (node address, pid) of every worker this backend started
        self._workers: set[tuple[str, int]] = set()
        #: connected through Ray Client (`ray://`): some of Ray's API is missing there
        self.client_mode = False
        #: builds and pushes the images of `ray_image_registry` (made when first needed)
        self._images: DockerBackend | None = None

    # -- the cluster -------------------------------------------------------------------------

    def connect(self) -> None:
        """Connect to the cluster (once; a Ray the kernel already initialized is used as is).

        Raises:
            BackendError: the cluster cannot be reached, naming the address and the fix.
        """
        with self._lock:
            if self._closed:
                raise BackendError(
                    "backend='ray': the backend is closed (the kernel is shutting down)."
                )
            if self._connected:
                return
            if not ray.is_initialized():
                address = config.ray_address
                try:
                    ray.init(
                        address=address,
                        # Worker output reaches each job (see _ray_actor.py); Ray's own
                        # forwarding would print it into whichever cell runs.
                        log_to_driver=False,
                        logging_level=logging.WARNING,
                        include_dashboard=False,
                        # What runs in the actors travels with the job (see _ray_options.py).
                        runtime_env=_job_runtime_env(),
                    )
                except Exception as exc:  # noqa: BLE001 - Ray raises many kinds here
                    raise BackendError(
                        f"backend='ray': cannot connect to the Ray cluster at "
                        f"{address or 'RAY_ADDRESS or a new local Ray'} ({type(exc).__name__}: "
                        f"{exc}). Fix: start the cluster, or point "
                        "sieve.configure(ray_address=...) at it ('ray://head:10001' for Ray "
                        "Client)."
                    ) from exc
                self._owns_ray = True
            self._namespace = ray.get_runtime_context().namespace
            self.client_mode = ray.util.client.ray.is_connected()  # type: ignore[no-untyped-call]
            self._worker_class = ray.remote(SieveWorker)
            _quiet_deaths_of(self._workers)
            sweep_grants(_hub_exists)
            # At exit, close before Ray's own handler (registered by `ray.init`, before this)
            # shuts Ray down: a thread of this backend calling Ray after that aborts the
            # process ("The core worker has already been shutdown").
            atexit.register(self.close)
            self._connected = True

    def alive(self) -> bool:
        """Whether Ray may be called from the backend's threads. (Most Ray calls start a new
        local Ray when none is connected: after a shutdown, nothing may call it again.)"""
        return not self._closed and ray.is_initialized()

    def _ensure_hub(self) -> Any:
        with self._lock:
            if self._hub is None:
                self._hub = self._start_hub()
                self._collector = threading.Thread(
                    target=self._collect, name="sieve-ray-hub", daemon=True
                )
                self._collector.start()
            return self._hub

    def _start_hub(self) -> Any:
        return (
            ray.remote(SieveHub)
            .options(
                name=self._hub_name,
                namespace=self._namespace,
                num_cpus=0,
                max_concurrency=10_000,
                max_restarts=0,
                # On the head node: it goes only with the cluster.
                resources={"node:__internal_head__": 0.001},
            )
            .remote()
        )

    def _post(self, worker_id: str, message: Any) -> None:
        """Leave `message` in a worker's mailbox (fire and forget)."""
        with self._lock:
            hub = self._hub
            if hub is not None and self.alive():
                try:
                    hub.post.remote(worker_id, message)
                except Exception:  # noqa: BLE001, S110 - Ray is shutting down
                    pass

    def _collect(self) -> None:
        """Hand what workers posted to their links (the `sieve-ray-hub` thread)."""
        failures = 0
        while True:
            with self._lock:
                if not self.alive():
                    return
                hub = self._hub
                asked = hub.collect.remote(_COLLECT_SECONDS)
            try:
                posted = ray.get(asked)
                failures = 0
            except ray.exceptions.RayActorError:
                if self._closed:
                    return
                failures += 1
                with self._lock:  # the hub died: a new one under the same name
                    if self._hub is hub and failures < 5:
                        self._hub = self._start_hub()
                continue
            except Exception:  # noqa: BLE001 - Ray was shut down under us
                return
            for worker_id, numbered in posted:
                link = self._links.get(worker_id)
                if link is not None:
                    link.side_messages(loads(numbered))

    def granted(self, worker_id: str) -> int:
        """The highest call number `worker_id` was granted (`_ray_grants.py`); raises when
        that cannot be read."""
        return read_grant(self._grant_key(worker_id))

    def _grant_key(self, worker_id: str) -> str:
        return grant_key(self._namespace or "", self._hub_name, worker_id)

    def forget(self, worker_id: str) -> None:
        """A link closed: its mailbox and its grant go."""
        if self.alive():
            delete_grants(self._grant_key(worker_id))
        self._links.pop(worker_id, None)
        self._placed.pop(worker_id, None)
        with self._lock:
            hub = self._hub
            if hub is not None and self.alive():
                try:
                    hub.forget.remote(worker_id)
                except Exception:  # noqa: BLE001, S110 - Ray is shutting down
                    pass

    # -- Backend -----------------------------------------------------------------------------

    def check(self, spec: FunctionSpec) -> list[str]:
        self.connect()
        return unsupported_notes(spec, config.ray_actor_options, config.ray_image_registry)

    def prepare(self, spec: FunctionSpec, log: Callable[[str], None]) -> None:
        """Build and push `spec`'s image when it needs one (`ray_image_registry`)."""
        self.connect()
        self._image_for(spec, log)

    def _image_for(self, spec: FunctionSpec, log: Callable[[str], None] | None) -> str | None:
        """The image `spec`'s workers run in when the backend builds it (see
        `needs_built_image`): the Docker backend's image of its environment, with the
        kernel's Ray (the cluster's own version: drivers and workers run one), pushed to
        `ray_image_registry`. None when the workers run in the cluster's environment."""
        registry = config.ray_image_registry
        if registry is None or not needs_built_image(spec, config.ray_actor_options, registry):
            return None
        with self._lock:
            if self._images is None:
                from sieve_jupyter.backends.docker import DockerBackend

                self._images = DockerBackend()
            images = self._images
        return images.publish(spec, registry, (f"ray=={ray.__version__}",), log)

    def check_workers(self, spec: FunctionSpec, workers: int) -> None:
        self.connect()
        options = actor_options(spec, config.ray_actor_options)
        problem = infeasibility(spec, workers, options, ray.nodes())  # type: ignore[no-untyped-call]
        if problem is not None:
            if spec.gpu is not None and problem.startswith("gpu:"):
                raise GpuUnavailableError(problem)
            raise BackendError(problem)

    def describe_request(self, spec: FunctionSpec) -> str:
        """What a worker of `spec` asks the cluster for, for a message about waiting."""
        options = actor_options(spec, config.ray_actor_options)
        asked = {
            k: options[k]
            for k in ("num_cpus", "num_gpus", "accelerator_type", "memory", "resources")
            if k in options
        }
        free = ray.available_resources()  # type: ignore[no-untyped-call]
        return f"it asks for {asked or 'nothing special'}; free now: {free}"

    def start_link(self, launch: LinkLaunch, receiver: LinkReceiver) -> RayLink:
        self.connect()
        hub = self._ensure_hub()
        image = self._image_for(launch.spec, lambda text: receiver.log("stderr", text))
        options = actor_options(launch.spec, config.ray_actor_options, image)
        self._place(launch, options)
        try:
            actor = self._worker_class.options(**options).remote(
                launch.worker_id, hub, self._hub_name, self._namespace
            )
        except Exception as exc:  # noqa: BLE001 - Ray refused the options
            self._placed.pop(launch.worker_id, None)
            raise BackendError(
                f"worker {launch.worker_id}: Ray refused to create the actor ({exc}). Fix: "
                "check sieve.config.ray_actor_options."
            ) from exc
        link = RayLink(self, actor, launch, receiver, self._post)
        self._links[launch.worker_id] = link
        return link

    def _place(self, launch: LinkLaunch, options: dict[str, Any]) -> None:
        """Name the node for a worker whose options ask Ray to spread (the default): the one
        with the fewest of its function's workers (`spread_node`), as a soft affinity — a node
        that cannot take it now passes it on, as "SPREAD" would. A strategy given in
        `ray_actor_options` is left as it is. (Workers of a function start together: each
        choice is recorded before the next is made.)"""
        if options.get("scheduling_strategy") != "SPREAD":
            return
        name = launch.spec.name
        nodes = ray.nodes()  # type: ignore[no-untyped-call]
        with self._lock:
            placed = list(self._placed.values())
            node_id = spread_node(
                options,
                nodes,
                siblings=[node for function, node in placed if function == name],
                others=[node for function, node in placed if function != name],
            )
            if node_id is None:
                return
            self._placed[launch.worker_id] = (name, node_id)
        options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(
            node_id, soft=True, _spill_on_unavailable=True
        )

    def started(self, node_ip: str, pid: int) -> None:
        """A worker answered from `pid` on `node_ip` (its death is reported by its job)."""
        self._workers.add((node_ip, pid))

    def close(self) -> None:
        """Stop every worker and the hub, let the backend's threads end, then disconnect if
        this backend connected (a Ray the kernel initialized itself stays connected)."""
        with self._lock:
            if self._closed:
                return
            links = list(self._links.values())
            hub, self._hub = self._hub, None
            alive = ray.is_initialized()
            if alive:
                for link in links:
                    link.kill()
                if hub is not None:
                    try:
                        ray.kill(hub, no_restart=True)
                    except Exception:  # noqa: BLE001, S110 - already gone
                        pass
                delete_grants(self._grant_key(""), prefix=True)
            self._closed = True
            images, self._images = self._images, None
        if images is not None:
            images.close()
        for link in links:
            link.join(5.0)
        if self._collector is not None:
            self._collector.join(_COLLECT_SECONDS + 2.0)
        if alive and self._owns_ray:
            ray.shutdown()


def _hub_exists(namespace: str, name: str) -> bool:
    """Whether the named hub (a kernel's, `_ray_hub.py`) is alive on the cluster."""
    try:
        ray.get_actor(name, namespace=namespace)
    except ValueError:
        return False
    except Exception:  # noqa: BLE001 - cannot tell: keep its grants
        return True
    return True


def _quiet_deaths_of(workers: set[tuple[str, int]]) -> None:
    """Keep Ray from printing "(raylet) A worker died ..." for `workers` into the kernel.

    A Ray driver prints the cluster's error messages about its job on its stdout, from a thread
    of its own; in a notebook that lands in whichever cell runs. The death of a sieve worker is
    reported to the job it concerns (and the worker replaced), so those messages are dropped;
    the others pass. Ray has no setting for this: its printing function is wrapped, if it is
    where this Ray version keeps it.
    """
    import ray._private.worker as ray_worker

    original = getattr(ray_worker, "print_to_stdstream", None)
    if original is None or getattr(original, "sieve_filter", None) is not None:
        if original is not None:
            original.sieve_filter.append(workers)
        return
    filters = [workers]

    def print_to_stdstream(data: dict[str, Any], ignore_prefix: bool) -> None:
        if data.get("pid") == "raylet" and any(
            _about(line, known) for line in data.get("lines", ()) for known in filters
        ):
            return
        original(data, ignore_prefix)

    print_to_stdstream.sieve_filter = filters  # type: ignore[attr-defined]
    ray_worker.print_to_stdstream = print_to_stdstream


def _about(line: str, workers: set[tuple[str, int]]) -> bool:
    match = _WORKER_DEATH.search(line)
    return match is not None and (match["ip"], int(match["pid"])) in workers


_WORKER_DEATH = re.compile(
    r"Worker IP address: (?P<ip>\S+) Worker port: \d+ Worker PID: (?P<pid>\d+)"
)


def _job_runtime_env() -> dict[str, Any]:
    """What travels with the kernel's Ray job to every node: the package's runtime and
    cloudpickle, and `ray_working_dir`, which each worker starts in."""
    runtime_env: dict[str, Any] = {"py_modules": package_modules(), "excludes": _EXCLUDES}
    if config.ray_working_dir is not None:
        runtime_env["working_dir"] = config.ray_working_dir
    return runtime_env
