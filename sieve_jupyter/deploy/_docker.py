"""Docker deployments: a container per version, from the bundle's image, found by its labels.

The image is built from the bundle exactly as ``docker build BUNDLE`` would (the Docker
backend's settings: base image, CA bundle, build network), tagged per version. The container
shares the host's network and runs the image's server on the allocated port, with a restart
policy; its labels say everything `sieve.deployments()` shows, so the engine is the only
record of it. All engine calls go through `backends._docker_deployments`.
"""

from __future__ import annotations

import os
import random
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from sieve_jupyter._errors import ConfigurationError
from sieve_jupyter.build import BUNDLE_DIR, SERVER_VENV
from sieve_jupyter.deploy._model import Deployment
from sieve_jupyter.deploy._paths import DIR_VARIABLE, READONLY_VARIABLE, read_only, slug
from sieve_jupyter.deploy._plan import RETIRE_SECONDS, Plan
from sieve_jupyter.deploy._registry import LocalRegistry
from sieve_jupyter.serve import TOKEN_VARIABLE

if TYPE_CHECKING:
    from sieve_jupyter.backends._docker_deployments import DeployedContainer, DeploymentEngine

__all__ = ["DockerKind", "docker_kind"]

#: ports a Docker deployment is given when none is asked for: below the range the kernel
#: hands out for outgoing connections and port 0, so nothing takes one between the choice and
#: the container's bind
_PORTS = (20000, 32767)


def _engine_expected() -> bool:
    """Whether a Docker engine could be there at all (cheap: no import, no connection)."""
    if read_only():
        return False  # inside a deployment container: no engine in reach
    if os.environ.get("DOCKER_HOST"):
        return True
    return os.path.exists("/var/run/docker.sock")


class DockerKind:
    """Docker deployments (see the module docstring)."""

    name = "docker"
    backends: tuple[str, ...] = ("docker",)

    def __init__(self, engine: DeploymentEngine, registry: LocalRegistry) -> None:
        self.engine = engine
        self.registry = registry

    # -- reading -----------------------------------------------------------------------------

    def versions(self, key: str | None = None) -> list[Deployment]:
        return [_deployment(c) for c in self.engine.containers(key)]

    def ports(self) -> set[int]:
        return {
            int(c.values["port"])
            for c in self.engine.containers()
            if c.values.get("port", "").isdigit()
        }

    # -- starting ----------------------------------------------------------------------------

    def start(self, plan: Plan, taken: set[int], log: Callable[[str], None]) -> Deployment:
        """Build the version's image, then run its container on an allocated port.

        Raises:
            BuildError: the image did not build.
            BackendError: the engine refused the container.
            ConfigurationError: the port asked for cannot be had.
        """
        from sieve_jupyter.backends._docker_deployments import deployment_labels
        from sieve_jupyter.backends._docker_options import DockerOptions
        from sieve_jupyter.bundle import write_bundle

        ref = plan.ref
        tag = image_tag(plan)
        if not self.engine.has_image(tag):
            log(f"{ref.key}: building the image of version {plan.version} ({tag}) ...")
            with tempfile.TemporaryDirectory(prefix="sieve-deploy-") as work:
                bundle = write_bundle(plan.files, Path(work) / "bundle")
                self.engine.build(
                    bundle, tag, network=DockerOptions.current().build_network, log=log
                )
        self.registry.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        root = str(self.registry.root)
        environment = dict(plan.env)
        environment.update({DIR_VARIABLE: root, READONLY_VARIABLE: "1", "PYTHONUNBUFFERED": "1"})
        if plan.token:
            environment[TOKEN_VARIABLE] = plan.token
        created = time.time()
        # The port is chosen and recorded (in the container's labels) under the registry's
        # lock, so two deploys never pick the same one.
        with self.registry.locked():
            port = _free_port(plan.host, plan.port, taken | self.ports())
            host = f"[{plan.host}]" if ":" in plan.host else plan.host
            url = f"http://{host}:{port}"
            labels = deployment_labels(
                {
                    "user": ref.user,
                    "name": ref.name,
                    "version": plan.version,
                    "digest": plan.digest,
                    "url": url,
                    "host": plan.host,
                    "port": str(port),
                    "functions": ",".join(plan.functions),
                    "default": plan.default,
                    "workers": str(plan.workers),
                    "created": f"{created:.3f}",
                    "image": tag,
                }
            )
            command = [
                f"{SERVER_VENV}/bin/python",
                "-m",
                "sieve_jupyter.cli",
                "serve",
                BUNDLE_DIR,
                "--host",
                plan.host,
                "--port",
                str(port),
                "--workers",
                str(plan.workers),
                "--deployment",
                plan.identity,
            ]
            suffix = "".join(random.choices("abcdefghijklmnopqrstuvwxyz0123456789", k=5))
            name = f"sieve-{slug(ref.user)}-{slug(ref.name)}-{plan.counter}-{suffix}"
            container = self.engine.run(
                image=tag,
                name=name,
                command=command,
                environment=environment,
                labels=labels,
                mounts=[(root, root, True)],
                gpu=plan.gpu,
                stop_seconds=RETIRE_SECONDS,
            )
        log(
            f"{ref.key}: version {plan.version} started (container {container[:12]}, {url}); "
            "waiting for its setup ..."
        )
        return Deployment(
            user=ref.user,
            name=ref.name,
            version=plan.version,
            digest=plan.digest,
            backend="docker",
            url=url,
            functions=plan.functions,
            default=plan.default,
            workers=plan.workers,
            created_at=created,
            state="running",
            token=plan.token,
            container=container,
        )

    def set_state(self, deployment: Deployment, state: str) -> None:
        """(The engine's own state is the record: nothing to write.)"""

    def alive(self, deployment: Deployment) -> tuple[bool, str]:
        state, code = self.engine.state(deployment.container or "")
        if state in ("running", "created"):
            return True, ""
        what = f"its container is {state}" + (f" (exit code {code})" if code is not None else "")
        return False, what + ":\n" + self.log_tail(deployment)

    def log_tail(self, deployment: Deployment, lines: int = 30) -> str:
        return "".join(
            self.engine.logs(deployment.container or "", lines=lines, follow=False)
        ).rstrip()

    def stop(self, deployment: Deployment, grace: float) -> None:
        """Drain and stop the container, then remove it and its image."""
        container = deployment.container or ""
        self.engine.stop(container, int(grace))
        self.engine.remove(container)
        tag = image_tag_of(deployment)
        if tag is not None:
            self.engine.remove_image(tag)

    def logs(self, deployment: Deployment, lines: int) -> list[str]:
        return list(self.engine.logs(deployment.container or "", lines=lines, follow=False))


def image_tag(plan: Plan) -> str:
    return (
        f"sieve-jupyter-deploy:{slug(plan.ref.user).lower()[:40]}-"
        f"{slug(plan.ref.name).lower()[:40]}-{plan.version}"
    )


def image_tag_of(deployment: Deployment) -> str | None:
    return (
        f"sieve-jupyter-deploy:{slug(deployment.user).lower()[:40]}-"
        f"{slug(deployment.name).lower()[:40]}-{deployment.version}"
    )


def _free_port(host: str, wanted: int | None, taken: set[int]) -> int:
    """A port nothing listens on and no deployment has recorded (`wanted`, if given)."""
    candidates = (
        [wanted] if wanted is not None else random.sample(range(_PORTS[0], _PORTS[1] + 1), 200)
    )
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for port in candidates:
        if port in taken:
            continue
        probe = socket.socket(family, socket.SOCK_STREAM)
        try:
            probe.bind((host, port))
        except OSError:
            continue
        finally:
            probe.close()
        return port
    if wanted is not None:
        raise ConfigurationError(
            f"port: {wanted} is in use or belongs to another deployment. Fix: another port, "
            "or leave it out to have one allocated."
        )
    raise ConfigurationError("port: no free port found. Fix: name one with port=...")


def _deployment(container: DeployedContainer) -> Deployment:
    values = container.values
    created = float(values.get("created", "0") or 0)
    return Deployment(
        user=values.get("user", ""),
        name=values.get("name", ""),
        version=values.get("version", "0-"),
        digest=values.get("digest", ""),
        backend="docker",
        url=values.get("url", ""),
        functions=tuple(f for f in values.get("functions", "").split(",") if f),
        default=values.get("default", ""),
        workers=int(values.get("workers", "1") or 1),
        created_at=created,
        state=container.state,
        token=container.environment.get(TOKEN_VARIABLE) or None,
        container=container.id,
        started_at=container.started_at,
        restarts=container.restarts,
    )


_kind: DockerKind | None = None
_unavailable_until = 0.0
_lock = threading.Lock()


def docker_kind(registry: LocalRegistry, required: bool) -> DockerKind | None:
    """The Docker kind, when an engine answers (None otherwise; with `required`, its error).

    An engine that did not answer is not asked again for a while: every name lookup asks for
    the Docker deployments, and most machines have no engine.

    Raises:
        BackendError, ConfigurationError: (`required`) no engine, or no docker package.
    """
    global _kind, _unavailable_until
    with _lock:
        if _kind is not None:
            _kind.registry = registry
            return _kind
        if not required and (not _engine_expected() or time.monotonic() < _unavailable_until):
            return None
        try:
            from sieve_jupyter.backends._docker_deployments import DeploymentEngine
        except ImportError:
            if required:
                raise ConfigurationError(
                    "backend: deploying with Docker needs the docker package. Fix: pip install "
                    "'sieve-jupyter[docker]', or deploy with backend='local'."
                ) from None
            _unavailable_until = time.monotonic() + 60
            return None
        engine = DeploymentEngine()
        try:
            engine.client  # noqa: B018 - connects, or says why not
        except Exception:
            if required:
                raise
            _unavailable_until = time.monotonic() + 30
            return None
        _kind = DockerKind(engine, registry)
        return _kind
