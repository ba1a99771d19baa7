"""Deployment containers on the Docker engine: build a bundle's image, run it so it outlives
the kernel, find it again by its labels, stop it, read its logs.

The containers' labels are the Docker deployments' registry (there is no other record that
could disagree with the engine): user, name, version, content hash, the address and port, the
functions. A deployment container is not owned by a kernel (no owner label), so the reaper of
dead kernels' workers never touches it; it has a restart policy, so it comes back after its
server crashes or the engine restarts. It shares the host's network: its server binds the
allocated port on the host's loopback exactly as a local deployment's does (and other
interfaces only with a token), and a function inside it reaches other deployments there.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import docker
import docker.errors
import docker.types

from sieve_jupyter._errors import BackendError
from sieve_jupyter.backends._docker_client import connect
from sieve_jupyter.build import LABEL_PREFIX, BuildLog

__all__ = ["DEPLOYMENT_LABEL", "DeployedContainer", "DeploymentEngine", "deployment_labels"]

#: ``user/name`` on every deployment container (what finds them all)
DEPLOYMENT_LABEL = f"{LABEL_PREFIX}.deployment"
_PREFIX = f"{DEPLOYMENT_LABEL}."
#: the repository of deployment images (tagged per version)
IMAGE_REPOSITORY = "sieve-jupyter-deploy"
#: the engine keeps at most this much of a deployment's output
_LOG_LIMITS = {"max-size": "10m", "max-file": "3"}


def deployment_labels(values: dict[str, str]) -> dict[str, str]:
    """Container labels for a deployment's `values` (``user``, ``name``, ``version``, ...)."""
    labels = {DEPLOYMENT_LABEL: f"{values['user']}/{values['name']}"}
    labels.update({f"{_PREFIX}{key}": value for key, value in values.items()})
    return labels


@dataclass(frozen=True)
class DeployedContainer:
    """A deployment container as the engine reports it."""

    id: str
    name: str
    #: the deployment's values, from its labels (without the prefix)
    values: dict[str, str]
    #: created, running, restarting, paused, exited, dead
    state: str
    started_at: float | None
    restarts: int
    exit_code: int | None
    environment: dict[str, str]


def _timestamp(text: str | None) -> float | None:
    if not text or text.startswith("0001-"):
        return None
    # the engine writes nanoseconds; Python reads microseconds
    head, _, rest = text.partition(".")
    zone = "+00:00" if rest.endswith("Z") or not rest else rest[rest.find("+") :]
    micros = "".join(ch for ch in rest.split("+")[0].rstrip("Z") if ch.isdigit())[:6]
    try:
        return datetime.fromisoformat(f"{head}.{micros or '0'}{zone}").timestamp()
    except ValueError:
        return None


class DeploymentEngine:
    """The Docker engine, as deployments use it (a client made on first use)."""

    def __init__(self, client: docker.DockerClient | None = None) -> None:
        self._client = client
        self._lock = threading.Lock()

    @property
    def client(self) -> docker.DockerClient:
        """Raises:
        BackendError: no Docker engine answers (with the fix)."""
        with self._lock:
            if self._client is None:
                self._client = connect(
                    "Fix: start Docker (dockerd), or point DOCKER_HOST at a running engine, or "
                    "deploy with backend='local'.",
                    timeout=30,
                )
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    # -- images ------------------------------------------------------------------------------

    def build(
        self, context: Path, tag: str, *, network: str | None, log: Callable[[str], None]
    ) -> None:
        """Build the bundle at `context` as `tag`; each line of progress goes to `log`.

        Raises:
            BuildError: the build failed (the failing step and the tail of its output).
        """
        follow = BuildLog()
        try:
            stream = self.client.api.build(
                path=str(context),
                tag=tag,
                rm=True,
                forcerm=True,
                decode=True,
                network_mode=network,
            )
            for chunk in stream:
                for line in follow.feed(chunk):
                    log(line)
            for line in follow.finish():
                log(line)
        except docker.errors.APIError as exc:
            follow.error = follow.error or str(exc.explanation or exc)
        if follow.error or not self.has_image(tag):
            raise follow.failure(f"the deployment image {tag}")

    def has_image(self, tag: str) -> bool:
        try:
            self.client.api.inspect_image(tag)
        except docker.errors.ImageNotFound:
            return False
        return True

    def remove_image(self, tag: str) -> None:
        """Remove a version's image (an image another container still uses stays)."""
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            self.client.api.remove_image(tag)

    # -- containers --------------------------------------------------------------------------

    def run(
        self,
        *,
        image: str,
        name: str,
        command: list[str],
        environment: dict[str, str],
        labels: dict[str, str],
        mounts: list[tuple[str, str, bool]],
        gpu: bool,
        stop_seconds: int,
    ) -> str:
        """Start a deployment container; returns its id.

        Raises:
            BackendError: the engine refused to create or start it.
        """
        api = self.client.api
        host_config = api.create_host_config(
            network_mode="host",
            restart_policy={"Name": "unless-stopped"},
            mounts=[
                docker.types.Mount(target, source, type="bind", read_only=read_only)
                for source, target, read_only in mounts
            ],
            device_requests=[docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])]
            if gpu
            else None,
            init=True,
            # a deployment runs for months: its log is capped (the json-file driver keeps
            # everything otherwise)
            log_config=docker.types.LogConfig(
                type=docker.types.LogConfig.types.JSON, config=_LOG_LIMITS
            ),
        )
        try:
            created = api.create_container(
                image,
                command=command,
                name=name,
                environment=environment,
                labels=labels,
                host_config=host_config,
                stop_signal="SIGTERM",
                stop_timeout=stop_seconds,
            )
        except docker.errors.APIError as exc:
            raise BackendError(
                f"cannot create the deployment container {name}: {exc.explanation or exc}"
            ) from exc
        container_id = str(created["Id"])
        try:
            api.start(container_id)
        except docker.errors.APIError as exc:
            with contextlib.suppress(docker.errors.APIError):
                api.remove_container(container_id, force=True)
            raise BackendError(
                f"cannot start the deployment container {name}: {exc.explanation or exc}"
            ) from exc
        return container_id

    def containers(self, key: str | None = None) -> list[DeployedContainer]:
        """Deployment containers (of ``user/name`` `key`, or all), in any state."""
        label = DEPLOYMENT_LABEL if key is None else f"{DEPLOYMENT_LABEL}={key}"
        api = self.client.api
        found = []
        for listed in api.containers(all=True, filters={"label": label}):
            try:
                attrs = api.inspect_container(listed["Id"])
            except docker.errors.NotFound:
                continue  # removed meanwhile
            labels = attrs["Config"].get("Labels") or {}
            state = attrs.get("State") or {}
            environment = dict(
                item.partition("=")[::2] for item in attrs["Config"].get("Env") or []
            )
            found.append(
                DeployedContainer(
                    id=str(attrs["Id"]),
                    name=str(attrs.get("Name", "")).lstrip("/"),
                    values={
                        k[len(_PREFIX) :]: v for k, v in labels.items() if k.startswith(_PREFIX)
                    },
                    state=str(state.get("Status", "unknown")),
                    started_at=_timestamp(state.get("StartedAt")),
                    restarts=int(attrs.get("RestartCount") or 0),
                    exit_code=state.get("ExitCode") if state.get("Status") == "exited" else None,
                    environment=environment,
                )
            )
        return found

    def state(self, container_id: str) -> tuple[str, int | None]:
        """The container's state and, once it exited, its exit code (("gone", None) when it
        no longer exists)."""
        try:
            attrs = self.client.api.inspect_container(container_id)
        except docker.errors.NotFound:
            return "gone", None
        state = attrs.get("State") or {}
        status = str(state.get("Status", "unknown"))
        return status, (state.get("ExitCode") if status == "exited" else None)

    def stop(self, container_id: str, seconds: int) -> None:
        """SIGTERM (the server drains: its jobs in flight finish), SIGKILL after `seconds`;
        a stopped container is not restarted by its policy."""
        with contextlib.suppress(docker.errors.NotFound):
            self.client.api.stop(container_id, timeout=seconds)

    def remove(self, container_id: str) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            self.client.api.remove_container(container_id, force=True)

    def logs(self, container_id: str, *, lines: int, follow: bool) -> Iterator[str]:
        """The container's output, `lines` from the end, then (with `follow`) as it comes."""
        try:
            if not follow:
                data = self.client.api.logs(container_id, tail=lines)
                yield from data.decode(errors="replace").splitlines(keepends=True)
                return
            stream = self.client.api.logs(container_id, tail=lines, stream=True, follow=True)
            partial = ""
            for chunk in stream:
                text = partial + chunk.decode(errors="replace")
                *complete, partial = text.split("\n")
                for line in complete:
                    yield line + "\n"
            if partial:
                yield partial
        except docker.errors.NotFound:
            return

    def wait_gone(self, container_id: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.state(container_id)[0] in ("exited", "dead", "gone"):
                return True
            time.sleep(0.1)
        return False
