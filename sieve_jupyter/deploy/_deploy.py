"""Deploying, redeploying and undeploying a name.

A deploy exports the functions to a bundle (as `sieve.export` does) and hashes it with the
settings. Unchanged from the version the name serves: nothing happens, and it says so.
Otherwise the next version starts next to the old one (a local server process, or a container
with the Docker backend), and once its setup is done (health READY) the name points to it; the
old versions then drain -- they take no new predictions and finish those in flight -- and
stop. A new version whose setup fails is stopped and the old one keeps serving; the error says
why. One process changes a name at a time (the others wait for it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sieve_jupyter._config import config
from sieve_jupyter._errors import BuildError, DeployError, FunctionNotFoundError
from sieve_jupyter.deploy._catalog import Catalog, probe
from sieve_jupyter.deploy._model import Deployment, NameRef, parse_name
from sieve_jupyter.deploy._options import DeployOptions
from sieve_jupyter.deploy._plan import RETIRE_SECONDS, Plan, content_digest
from sieve_jupyter.serve import require_server

if TYPE_CHECKING:
    from sieve_jupyter.bundle import BundleFunction

__all__ = ["DeployResult", "deploy", "deploy_bundle", "undeploy"]

#: seconds a deploy waits for another process that is changing the same name
_WAIT_FOR_OTHERS = 1800.0


@dataclass(frozen=True)
class DeployResult:
    """What a deploy did: ``outcome`` is ``"new"`` (the name's first version),
    ``"updated"`` (a new version replaced `retired`) or ``"unchanged"`` (nothing to do)."""

    deployment: Deployment
    outcome: str
    retired: tuple[Deployment, ...] = ()
    setup_seconds: float | None = None

    @property
    def name(self) -> str:
        return self.deployment.key

    @property
    def version(self) -> str:
        return self.deployment.version

    @property
    def url(self) -> str:
        return self.deployment.url

    def __str__(self) -> str:
        d = self.deployment
        if self.outcome == "unchanged":
            return (
                f"{d.key} is unchanged: version {d.version} ({d.backend}) keeps serving at "
                f"{d.url}. (force=True deploys it again anyway.)"
            )
        setup = f"; setup took {self.setup_seconds:.1f} s" if self.setup_seconds else ""
        text = f"Deployed {d.key} version {d.version} ({d.backend}) at {d.url}{setup}."
        if self.retired:
            old = ", ".join(r.version for r in self.retired)
            text += (
                f" Version {old} finished {'its' if len(self.retired) == 1 else 'their'} "
                "jobs in flight and stopped."
            )
        if d.token:
            text += " It wants a token: sieve.function.get finds it; see sieve.deployments()."
        text += f"\nCall it from anywhere: sieve.function.get({d.key!r})"
        return text

    __repr__ = __str__

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))


def _targets(functions: Any) -> tuple[list[Any], str]:
    items = list(functions) if isinstance(functions, (list, tuple)) else [functions]
    if not items:
        raise DeployError("nothing to deploy. Fix: pass a function or model (or a list).")
    first = items[0]
    spec = getattr(first, "spec", None)
    name = spec.name if spec is not None else str(first).rpartition("/")[2]
    return items, name


def _registration(name: str) -> tuple[str | None, int | None]:
    """The backend and workers `name` is registered with in this process, if it is."""
    from sieve_jupyter.manager import get_manager

    try:
        record = get_manager().record(name)
    except FunctionNotFoundError:
        return None, None
    return record.backend, record.workers


def deploy(
    functions: Any,
    *,
    backend: str | None = None,
    workers: int | None = None,
    host: str = "127.0.0.1",
    port: int | None = None,
    token: str | None = None,
    force: bool = False,
    timeout: float = 900.0,
    log: Callable[[str], None] | None = None,
) -> DeployResult:
    """Deploy functions and models so they serve after this process ends, under
    ``user/NAME`` (the first one's name), found by ``sieve.function.get`` from anywhere.

    Args:
        functions: a handle (``Adder``), a name, or a list of them (the first is the
            deployment's name and default function).
        backend: ``"local"`` (a detached server process), ``"docker"`` (a container from
            the bundle's image) or ``"ray"`` (a detached server process whose workers are
            actors of the Ray cluster `sieve.config.ray_address` names); default: the backend
            the function is registered with.
        workers: warm workers per function (default: as registered).
        host: the interface the server binds; another than loopback gets a token.
        port: the port (default: one is allocated).
        token: the bearer token clients must send (generated when `host` is not loopback).
        force: deploy a new version even if nothing changed.
        timeout: seconds to wait for the new version's setup.
        log: where progress lines go (default: printed).

    Raises:
        DeployError: the new version's setup failed (the old one keeps serving).
        ExportError: the code cannot be captured (see `sieve.export`).
        EnvironmentVariableError: a declared `sieve.Env` has no value here.
        ConfigurationError: a bad option, naming it.
    """
    from sieve_jupyter.bundle._export import export

    items, name = _targets(functions)
    registered_backend, registered_workers = _registration(name)
    chosen = backend or registered_backend or config.backend
    options = DeployOptions(
        backend=chosen,
        workers=workers or registered_workers or config.workers,
        ray_address=config.ray_address if chosen == "ray" else None,
        host=host,
        port=port,
        token=token,
        force=force,
        timeout=timeout,
    ).checked()
    catalog = Catalog()
    if options.backend == "docker":
        catalog.kinds(docker=True)  # no engine: say so before exporting anything
    exported = export(items, None, **_export_options(options.backend))
    return deploy_bundle(
        exported.files, exported.functions, exported.default, options, log=log, catalog=catalog
    )


def _export_options(backend: str) -> dict[str, Any]:
    """A Docker deployment's image is built as the Docker backend builds (base image, CA)."""
    if backend != "docker":
        return {}
    from sieve_jupyter.backends._docker_options import DockerOptions

    options = DockerOptions.current()
    return {"base_image": options.base_image, "ca_bundle": options.ca_bundle}


def deploy_bundle(
    files: dict[str, bytes],
    functions: Sequence[BundleFunction],
    default: str,
    options: DeployOptions,
    *,
    log: Callable[[str], None] | None = None,
    catalog: Catalog | None = None,
) -> DeployResult:
    """Deploy a bundle's `files` (as `bundle_files` makes them) under ``user/NAME``, NAME
    being the `default` function's, as `options` say; see `deploy`."""
    from sieve_jupyter.manager import get_manager

    say = log if log is not None else print
    options = options.checked()
    if options.backend in ("local", "ray"):  # (its server runs with this environment's packages)
        require_server("a local deployment")
    catalog = catalog if catalog is not None else Catalog()
    specs = [f.spec for f in functions]
    manager = get_manager()
    env: dict[str, str] = {}
    for spec in specs:
        env.update(manager.worker_environment(spec))  # (raises naming a missing one)
    settings = {**options.settings(), "env": sorted(env)}
    digest = content_digest(files, settings)
    ref = NameRef(config.user, default)
    with catalog.registry.deploying(ref.key, _WAIT_FOR_OTHERS, say):
        versions = catalog.versions(ref.key)
        current = catalog.current(versions)
        if (
            current is not None
            and current.digest == digest
            and not options.force
            and current.health in ("READY", "BUSY")
        ):
            return DeployResult(current, "unchanged")
        plan = Plan(
            ref=ref,
            counter=max((v.counter for v in versions), default=0) + 1,
            digest=digest,
            files=files,
            functions=tuple(f.name for f in functions),
            default=default,
            workers=options.workers,
            host=options.host,
            port=options.port,
            token=options.token,
            env=env,
            gpu=any(s.gpu is not None and not s.gpu.is_cpu for s in specs),
            backend=options.backend,
            ray_address=options.ray_address,
        )
        kinds = catalog.by_backend(docker=options.backend == "docker")
        kind: Any = kinds[options.backend]
        started = time.monotonic()
        try:
            new = kind.start(plan, catalog.ports(), say)
        except BuildError as exc:
            keeps = (
                f"version {current.version} keeps serving"
                if current is not None
                else "nothing was deployed"
            )
            raise DeployError(
                f"{ref.key}: the image of version {plan.version} did not build, so {keeps}.\n{exc}"
            ) from exc
        try:
            _wait_ready(kind, new, options.timeout, current)
        except BaseException:
            kind.stop(new, grace=5)
            raise
        setup = time.monotonic() - started
        kind.set_state(new, "serving")
        say(
            f"{ref.key}: version {new.version} is ready and serving"
            + (f"; version {current.version} drains and stops." if current else ".")
        )
        old = [v for v in versions if v.version != new.version]
        _retire(kinds, old)
        return DeployResult(new, "updated" if versions else "new", tuple(old), setup)


def _wait_ready(
    kind: Any, deployment: Deployment, timeout: float, current: Deployment | None
) -> None:
    """Wait until the new version's setup is done.

    Raises:
        DeployError: its setup failed, its server ended, or `timeout` passed.
    """
    keeps = (
        f"version {current.version} keeps serving at {current.url}"
        if current is not None
        else "nothing is deployed under that name"
    )
    what = f"{deployment.key}: version {deployment.version}"
    deadline = time.monotonic() + timeout
    while True:
        document = probe(deployment, timeout=5.0)
        status = document.get("status") if document is not None else None
        if status in ("READY", "BUSY"):
            return
        if status in ("SETUP_FAILED", "DEFUNCT"):
            logs = str((document or {}).get("setup", {}).get("logs", "")).rstrip()
            raise DeployError(
                f"{what} failed its setup, so {keeps}. Its setup said:\n{logs}\n"
                "Fix: correct the error, then deploy again."
            )
        alive, tail = kind.alive(deployment)
        if not alive:
            raise DeployError(
                f"{what}: its server stopped before it was ready, so {keeps}. "
                f"Its log ended with:\n{tail}"
            )
        if time.monotonic() > deadline:
            raise DeployError(
                f"{what} was not ready after {timeout:.0f} s, so {keeps}; the "
                "new version was stopped. Fix: a longer timeout= if its setup "
                "takes that long."
            )
        time.sleep(0.1)


def _retire(kinds: dict[str, Any], versions: Sequence[Deployment]) -> None:
    """Drain and stop `versions`, all at once (each finishes its jobs in flight first)."""
    threads = []
    for version in versions:
        kind = kinds.get(version.backend)
        if kind is None:
            continue
        thread = threading.Thread(
            target=kind.stop,
            args=(version, RETIRE_SECONDS),
            name=f"sieve-retire-{version.version}",
            daemon=True,
        )
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join()


def undeploy(name: str, *, log: Callable[[str], None] | None = None) -> list[Deployment]:
    """Stop a deployment and remove everything of it: its server processes or containers
    (every version; ``user/name:V`` for one), their registry entries, files and images.
    Jobs in flight finish first. Returns the versions removed.

    Raises:
        FunctionNotFoundError: no such deployment (the message lists them).
    """
    say = log if log is not None else print
    ref = parse_name(name, config.user)
    catalog = Catalog()
    with catalog.registry.deploying(ref.key, _WAIT_FOR_OTHERS, say):
        versions = catalog.versions(ref.key)
        if ref.version is not None:
            versions = [v for v in versions if v.matches(ref.version)]
        if not versions:
            raise FunctionNotFoundError(catalog.missing(ref))
        kinds = catalog.by_backend(
            docker=True if any(v.backend == "docker" for v in versions) else None
        )
        _retire(kinds, versions)
    say(
        f"Undeployed {ref}: "
        + ", ".join(f"version {v.version} ({v.backend})" for v in versions)
        + " stopped and removed."
    )
    return versions
