"""The Docker backend: build an image per environment, run each worker in its own container.

Images hold only the environment (tag = content hash, see `sieve_jupyter.build`); code travels
by value over the worker's Unix socket, which lives in a private directory bind-mounted into the
container, next to a read-only mount of this package. This module (with its `_docker_*`
helpers) is the only place that talks to the Docker engine.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import io
import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import docker
import docker.errors

from sieve_jupyter._errors import BackendError, PythonVersionMismatchError
from sieve_jupyter.backends._base import Backend, WorkerLaunch
from sieve_jupyter.backends._docker_client import connect
from sieve_jupyter.backends._docker_options import DockerOptions
from sieve_jupyter.backends._docker_owner import (
    MANAGED_LABEL,
    OWNER_LABEL,
    current_owner,
    find_dead_owned,
)
from sieve_jupyter.backends._docker_worker import (
    DockerWorker,
    container_settings,
    remove_container,
)
from sieve_jupyter.build import BuildContext, BuildLog, BuildOptions, make_build_context

if TYPE_CHECKING:
    from sieve_jupyter.spec import FunctionSpec

__all__ = ["DockerBackend", "DockerOptions", "DockerWorker"]

_NVIDIA_FIX = (
    "Fix: install the NVIDIA Container Toolkit on the Docker host and register it "
    "(`nvidia-ctk runtime configure --runtime=docker`, then restart dockerd), or run this "
    "function with backend='local'."
)
_CLOSED = (
    "backend='docker': the backend is closed (the kernel is shutting down), so no new "
    "containers start. Fix: create a new DockerBackend (or restart the kernel)."
)


class DockerBackend(Backend):
    """Runs workers in containers built from each function's environment.

    Args:
        options: build and run settings; when omitted, `DockerOptions.current()` is read each
            time an image is prepared or a worker starts, so ``sieve.configure`` applies at once.
        client: a Docker client; ``docker.from_env()`` (``DOCKER_HOST`` or the local socket)
            when omitted, created on first use.
    """

    name = "docker"

    def __init__(
        self, options: DockerOptions | None = None, client: docker.DockerClient | None = None
    ) -> None:
        self._options = options
        self._client = client
        self._lock = threading.Lock()
        self._build_locks: dict[str, threading.Lock] = {}
        self._images: dict[str, str] = {}  # environment hash + options -> tag known to exist
        self._pushed: set[str] = set()  # tags this backend pushed (`publish`)
        self._workers: weakref.WeakSet[DockerWorker] = weakref.WeakSet()
        self._owner = current_owner()
        self._closed = False
        self._reaped = False
        #: tags this backend built (not reused) — what "the same environment never builds
        #: twice" is checked against
        self.built: list[str] = []
        atexit.register(self.close)

    @property
    def options(self) -> DockerOptions:
        """The settings in effect (explicit ones, else the current configuration)."""
        return self._options if self._options is not None else DockerOptions.current()

    # -- engine ------------------------------------------------------------------------------

    @property
    def client(self) -> docker.DockerClient:
        """The engine client, connected (and the reaper run) on first use.

        Raises:
            BackendError: no Docker engine answers.
        """
        with self._lock:
            if self._client is None:
                self._client = connect(
                    "Fix: start Docker (dockerd), or point DOCKER_HOST at a running engine."
                )
            if not self._reaped:
                self._reaped = True
                # a failed sweep must not stop this kernel from using the engine
                with contextlib.suppress(docker.errors.DockerException):
                    self.reap()
            return self._client

    def reap(self) -> list[str]:
        """Remove containers left by kernels on this host that have died; return their ids."""
        client = self._client if self._client is not None else self.client
        listed = client.api.containers(all=True, filters={"label": MANAGED_LABEL})
        removed = []
        for container_id in find_dead_owned(listed, self._owner):
            if remove_container(client.api, container_id):
                removed.append(container_id)
        return removed

    # -- environment ---------------------------------------------------------------------------

    def check(self, spec: FunctionSpec) -> list[str]:
        """Fail early when the spec's Python differs from the kernel's (see the error's fix)."""
        wanted = spec.environment.python_version
        kernel = f"{sys.version_info.major}.{sys.version_info.minor}"
        if wanted != kernel:
            raise PythonVersionMismatchError(
                f"python_version: {spec.name!r} asks for Python {wanted} but this kernel runs "
                f"Python {kernel}. Code reaches the container pickled by value (cloudpickle), "
                "and pickled code only loads on the same Python minor version. Fix: set "
                f'python_version="{kernel}" or leave it out (Sieve examples written for '
                f'"{wanted}" usually run unchanged on {kernel}), or run the notebook on a '
                f"Python {wanted} kernel."
            )
        return []

    def build_context(self, spec: FunctionSpec) -> BuildContext:
        """The build context (and tag) for `spec`'s environment, under these options."""
        return make_build_context(spec.environment, self.options.build_options())

    def prepare(self, spec: FunctionSpec, log: Callable[[str], None]) -> None:
        """Make sure the image for `spec`'s environment exists, building it if needed.

        Raises:
            BuildError: the build failed (carries the failing step and the tail of its log).
            BackendError: the engine is unreachable.
        """
        self.image_for(spec, log)

    def image_for(
        self,
        spec: FunctionSpec,
        log: Callable[[str], None] | None = None,
        *,
        build_options: BuildOptions | None = None,
    ) -> str:
        """The tag of `spec`'s image, built first unless the engine already has it.

        `log` gets each line of progress, newline-terminated (the text a cell shows).
        `build_options` replaces the builder's part of this backend's options (another
        backend's image: see `publish`).
        """

        def emit(line: str) -> None:
            if log is not None:
                log(line + "\n")

        options = self.options
        build_options = build_options or options.build_options()
        key = f"{spec.environment.content_hash()} {build_options!r}"
        known = self._images.get(key)
        if known is not None:
            return known
        context = make_build_context(spec.environment, build_options)
        with self._lock:
            build_lock = self._build_locks.setdefault(context.tag, threading.Lock())
        with build_lock:  # one build per tag, even when several functions prepare at once
            # an existing image is used silently: only a real build has something to say
            if not self._image_exists(context.tag):
                self._build(context, options, emit)
        self._images[key] = context.tag
        return context.tag

    def publish(
        self,
        spec: FunctionSpec,
        registry: str,
        requirements: tuple[str, ...],
        log: Callable[[str], None] | None = None,
    ) -> str:
        """Build `spec`'s image with `requirements` added to the SDK's own (e.g. the Ray a
        cluster runs), under `registry`, and push it there. Returns the pushed reference.

        The content tag covers the environment and the build options, so an unchanged
        environment is neither rebuilt nor pushed again by this backend.

        Raises:
            BuildError: the build failed.
            BackendError: the push failed (naming the registry's answer and the fix).
        """
        base = self.options.build_options()
        build_options = dataclasses.replace(
            base,
            repository=f"{registry}/{base.repository}",
            sdk_requirements=(*base.sdk_requirements, *requirements),
        )
        tag = self.image_for(spec, log, build_options=build_options)
        with self._lock:
            if tag in self._pushed:
                return tag
            push_lock = self._build_locks.setdefault(f"push {tag}", threading.Lock())
        with push_lock:
            if tag not in self._pushed:
                self._push(tag, log)
                self._pushed.add(tag)
        return tag

    def _push(self, tag: str, log: Callable[[str], None] | None) -> None:
        repository, _, version = tag.rpartition(":")
        if log is not None:
            log(f"Pushing {tag} ...\n")
        error = ""
        try:
            for chunk in self.client.api.push(repository, version, stream=True, decode=True):
                error = chunk.get("error") or error
        except docker.errors.APIError as exc:
            error = str(exc.explanation or exc)
        if error:
            raise BackendError(
                f"ray_image_registry: pushing {tag} failed ({error}). Fix: log the engine in "
                f"to the registry (docker login {repository.split('/')[0]}), or point "
                "sieve.configure(ray_image_registry=...) at one it may push to."
            )
        if log is not None:
            log(f"Pushed {tag}.\n")

    def _image_exists(self, tag: str) -> bool:
        try:
            self.client.api.inspect_image(tag)
        except docker.errors.ImageNotFound:
            return False
        return True

    def _build(
        self, context: BuildContext, options: DockerOptions, log: Callable[[str], None]
    ) -> None:
        log(f"Building image {context.tag} from {context.base_image} ...")
        follow = BuildLog()
        try:
            stream = self.client.api.build(
                fileobj=io.BytesIO(context.tar_bytes()),
                custom_context=True,
                tag=context.tag,
                rm=True,
                forcerm=True,
                decode=True,
                network_mode=options.build_network,
            )
            for chunk in stream:
                for line in follow.feed(chunk):
                    log(line)
            for line in follow.finish():
                log(line)
        except docker.errors.APIError as exc:  # e.g. the base image cannot be pulled
            follow.error = follow.error or str(exc.explanation or exc)
        if follow.error or not self._image_exists(context.tag):
            fix = ""
            if follow.step.startswith("FROM"):
                fix = (
                    f"Fix: make {context.base_image} available to the engine (docker pull, or "
                    "a reachable registry), or set docker_base_image to an image it has."
                )
            raise follow.failure(context.tag, fix)
        self.built.append(context.tag)
        log(f"Built image {context.tag}.")

    # -- workers -------------------------------------------------------------------------------

    def start_worker(self, launch: WorkerLaunch) -> DockerWorker:
        """Start one worker container that connects back through ``launch.ipc_dir``.

        Raises:
            BackendError: the container could not start (no NVIDIA runtime for a GPU worker,
                a bad network name, ...), with the fix.
        """
        if self._closed:
            raise BackendError(_CLOSED)
        spec = launch.spec
        options = self.options
        image = self.image_for(spec)
        settings = container_settings(launch, image, options, self._owner.label)
        name = settings["name"]
        client = self.client
        try:
            container = client.containers.create(**settings)
        except docker.errors.APIError as exc:
            raise BackendError(
                f"backend='docker': cannot create the container for {spec.name!r}: "
                f"{exc.explanation or exc}"
            ) from exc
        try:
            container.start()
        except docker.errors.APIError as exc:
            client.api.remove_container(container.id, force=True)
            text = str(exc.explanation or exc)
            if "nvidia" in text.lower() or "device driver" in text.lower():
                raise BackendError(
                    f"gpu: {spec.name!r} needs a GPU but the Docker engine cannot give "
                    f"containers one ({text}). {_NVIDIA_FIX}"
                ) from exc
            raise BackendError(
                f"backend='docker': cannot start the container for {spec.name!r}: {text}"
            ) from exc
        worker = DockerWorker(client, str(container.id), name, image, launch.ipc_dir / "boot.log")
        self._workers.add(worker)
        if self._closed:  # closed while this one was starting: it must not outlive the kernel
            worker.terminate(grace=0)
            raise BackendError(_CLOSED)
        return worker

    def containers(self) -> list[dict[str, Any]]:
        """This kernel's containers as the engine lists them (id, name, state, labels)."""
        return list(
            self.client.api.containers(
                all=True, filters={"label": f"{OWNER_LABEL}={self._owner.label}"}
            )
        )

    def close(self) -> None:
        """Remove every container this kernel started and start no more (at kernel exit).

        Workers that exit now may be replaced by the manager; closing first makes those
        replacements fail instead of leaving containers behind.
        """
        self._closed = True
        if self._client is None:
            return
        for worker in list(self._workers):
            # best effort at exit; the reaper of the next kernel is the backstop
            with contextlib.suppress(Exception):
                worker.terminate(grace=1.0)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                leftovers = self.containers()
            except docker.errors.DockerException:
                return
            if not leftovers:
                return
            for container in leftovers:  # a removal may already be in progress: wait for it
                with contextlib.suppress(docker.errors.DockerException):
                    self._client.api.remove_container(container["Id"], force=True)
            time.sleep(0.1)
