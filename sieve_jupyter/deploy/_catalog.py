"""Every deployment of this machine, whichever kind runs it, and which version a name means.

A name points to its newest version that is ready (health READY or BUSY, not draining); while
none is (a first version still in setup, a container restarting), to its newest live version,
which clients then wait for. So the switch of a redeploy is the moment the new version is
ready -- whoever deployed it need not survive to make it -- and a version whose setup failed
is never pointed to.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Sequence
from typing import Any, Protocol

from sieve_jupyter._config import config
from sieve_jupyter._errors import FunctionNotFoundError
from sieve_jupyter.deploy._model import Deployment, NameRef, parse_name
from sieve_jupyter.deploy._registry import LocalRegistry

__all__ = ["Catalog", "Kind", "probe"]

_READY = ("READY", "BUSY")


class Kind(Protocol):
    """What the deployer and the catalog need from a kind of deployment."""

    name: str
    #: the deployment backends it runs (``Deployment.backend``)
    backends: tuple[str, ...]

    def versions(self, key: str | None = None) -> list[Deployment]: ...

    def ports(self) -> set[int]: ...


def probe(deployment: Deployment, timeout: float = 3.0) -> dict[str, Any] | None:
    """The server's health-check document, or None when it does not answer."""
    import httpx

    try:
        response = httpx.get(f"{deployment.url}/health-check", timeout=timeout)
        if response.status_code != 200:
            return None
        document: dict[str, Any] = response.json()
        return document
    except (httpx.HTTPError, ValueError):
        return None


class Catalog:
    """The deployments of this machine: the local registry and, when an engine answers, the
    Docker engine's deployment containers."""

    def __init__(self, registry: LocalRegistry | None = None) -> None:
        from sieve_jupyter.deploy._local import LocalKind

        self.registry = registry if registry is not None else LocalRegistry()
        self.local = LocalKind(self.registry)

    def kinds(self, docker: bool | None = None) -> list[Kind]:
        """The kinds to look at: local always; Docker when an engine answers (`docker` True:
        it must, False: never)."""
        from sieve_jupyter.deploy._docker import docker_kind

        kinds: list[Kind] = [self.local]
        if docker is not False:
            found = docker_kind(self.registry, required=bool(docker))
            if found is not None:
                kinds.append(found)
        return kinds

    def by_backend(self, docker: bool | None = None) -> dict[str, Any]:
        """`kinds(docker)` by the backend names they run."""
        return {backend: kind for kind in self.kinds(docker) for backend in kind.backends}

    def versions(self, key: str | None = None) -> list[Deployment]:
        """Every running version (of ``user/name`` `key`, or all), newest first per name."""
        found: list[Deployment] = []
        for kind in self.kinds():
            found += kind.versions(key)
        return sorted(found, key=lambda d: (d.key, -d.counter))

    def ports(self) -> set[int]:
        taken: set[int] = set()
        for kind in self.kinds():
            taken |= kind.ports()
        return taken

    def with_health(self, deployments: Sequence[Deployment]) -> list[Deployment]:
        """The deployments with their servers' health, asked in parallel."""
        if not deployments:
            return []
        with concurrent.futures.ThreadPoolExecutor(min(8, len(deployments))) as pool:
            documents = list(pool.map(probe, deployments))
        return [d.with_health(doc) for d, doc in zip(deployments, documents, strict=True)]

    # -- which version a name means ----------------------------------------------------------

    def current(self, versions: Sequence[Deployment]) -> Deployment | None:
        """The version a name points to among `versions` (see the module docstring)."""
        live = [v for v in versions if v.state not in ("exited", "dead", "retiring")]
        live.sort(key=lambda d: -d.counter)
        waiting: Deployment | None = None
        for version in live:
            checked = version.with_health(probe(version))
            if checked.health in _READY and not checked.draining:
                return checked
            if (
                waiting is None
                and checked.health in ("STARTING", "UNREACHABLE")
                and not (checked.draining)
            ):
                waiting = checked
        return waiting

    def find(self, ref: NameRef) -> Deployment:
        """The version `ref` names (``user/name`` its current one, ``user/name:V`` that one).

        Raises:
            FunctionNotFoundError: no such deployment or version (listing what exists).
        """
        versions = self.versions(ref.key)
        if ref.version is not None:
            for version in versions:
                if version.matches(ref.version):
                    return version
            listed = ", ".join(v.version for v in versions) or "none"
            raise FunctionNotFoundError(
                f"deployment {ref.key} has no version {ref.version!r} (versions: {listed}). "
                f"Fix: {ref.key} for the current one, or one of those."
            )
        current = self.current(versions)
        if current is None:
            raise FunctionNotFoundError(self.missing(ref))
        return current

    def missing(self, ref: NameRef) -> str:
        names = sorted({d.key for d in self.versions()})
        return (
            f"no deployment {ref.key} is running (deployments: "
            f"{', '.join(names) or 'none'}). Fix: deploy it (Model.deploy(), "
            "%sieve deploy NAME or sieve-jupyter deploy), or check the name and user."
        )

    def serving(self, name: str) -> tuple[Deployment, str | None] | None:
        """What ``function.get(name)`` reaches: the deployment named so, or else one that
        serves a function of that name; and that function's name when it is not the
        deployment's default. None when there is neither."""
        ref = parse_name(name, config.user)
        try:
            return self.find(ref), None
        except FunctionNotFoundError:
            if ref.version is not None:
                raise
        for deployment in self.versions():
            if deployment.user == ref.user and ref.name in deployment.functions:
                owner = NameRef(deployment.user, deployment.name)
                try:
                    return self.find(owner), ref.name
                except FunctionNotFoundError:
                    continue
        return None

    def names(self) -> list[str]:
        return sorted({d.key for d in self.versions()})
