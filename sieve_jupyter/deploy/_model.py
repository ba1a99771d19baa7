"""What a deployment is, whichever kind runs it: a `Deployment` (one version of a name), how
``user/name[:version]`` is read, and how versions are named and compared.

A version is ``COUNTER-HASH``: the counter goes up by one with each deploy of a name that
changed anything, the hash is the content hash of what was deployed (the bundle's files and
the settings), so ``alice/adder:3`` and ``alice/adder:3-1f2e3d4c5b6a`` name the same version.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

from sieve_jupyter._errors import ConfigurationError

__all__ = ["Deployment", "NameRef", "parse_name", "version_string"]

#: a health probe's answer when the server does not answer at all
UNREACHABLE = "UNREACHABLE"


def version_string(counter: int, digest: str) -> str:
    return f"{counter}-{digest[:12]}"


@dataclass(frozen=True)
class NameRef:
    """``user/name[:version]``, read."""

    user: str
    name: str
    version: str | None = None

    @property
    def key(self) -> str:
        return f"{self.user}/{self.name}"

    def __str__(self) -> str:
        return self.key + (f":{self.version}" if self.version else "")


def parse_name(text: str, default_user: str) -> NameRef:
    """Read ``user/name[:version]`` (``name`` alone is the default user's).

    Raises:
        ConfigurationError: the text is not such a name.
    """
    rest, _, version = text.partition(":")
    user, _, name = rest.rpartition("/")
    if not name or "/" in user or (":" in text and not version):
        raise ConfigurationError(
            f"name: {text!r} is not a deployment name. Fix: 'user/name', or 'user/name:3' for "
            "one version (sieve.deployments() lists them)."
        )
    return NameRef(user or default_user, name, version or None)


@dataclass(frozen=True)
class Deployment:
    """One running version of a deployed name (see `sieve.deployments()`).

    Attributes:
        user, name: who deployed it, and the name it answers to (``user/name``).
        version: ``COUNTER-HASH``.
        backend: ``"local"`` (a detached server process) or ``"docker"`` (a container).
        url: where its server answers (Cog's API, see docs/serving.md).
        functions: the functions it serves; `default` also answers ``/predictions``.
        state: ``serving`` (the version its name points to), ``starting``, ``retiring`` (an
            older version finishing its jobs) or, for a container, the engine's state.
        health: the server's health-check status when it was asked (READY, BUSY, STARTING,
            SETUP_FAILED, DEFUNCT, or UNREACHABLE); None until asked.
    """

    user: str
    name: str
    version: str
    digest: str
    backend: str
    url: str
    functions: tuple[str, ...]
    default: str
    workers: int
    created_at: float
    state: str
    token: str | None = field(default=None, repr=False)
    #: local: the server process's identity label (host/boot/pid/start); docker: None
    process: str | None = None
    #: local: the identity label of the process that keeps its log (`_local.spawn_server`)
    log_keeper: str | None = None
    #: docker: the container's id
    container: str | None = None
    #: local: the version's folder (its bundle and server.log)
    directory: str | None = None
    #: docker: when the container last started (restarts count)
    started_at: float | None = None
    restarts: int = 0
    health: str | None = None
    ready_workers: int | None = None
    draining: bool = False

    @property
    def key(self) -> str:
        return f"{self.user}/{self.name}"

    @property
    def counter(self) -> int:
        return int(self.version.split("-", 1)[0])

    @property
    def pid(self) -> int | None:
        if self.process is None:
            return None
        return int(self.process.split("/")[2])

    def matches(self, version: str) -> bool:
        """Whether ``user/name:VERSION`` names this version (the counter, the full version,
        or a prefix of its hash of 4 characters or more)."""
        if version.isdigit():
            return int(version) == self.counter
        if version == self.version:
            return True
        return len(version) >= 4 and self.digest.startswith(version)

    def with_health(self, document: dict[str, Any] | None) -> Deployment:
        if document is None:
            return dataclasses.replace(self, health=UNREACHABLE, ready_workers=0)
        ready = sum(int(f.get("ready_workers", 0)) for f in document.get("functions", {}).values())
        return dataclasses.replace(
            self,
            health=str(document.get("status")),
            ready_workers=ready,
            draining=bool(document.get("draining")),
        )

    @property
    def uptime(self) -> float:
        return max(0.0, time.time() - (self.started_at or self.created_at))

    def describe(self) -> dict[str, Any]:
        """As JSON (what `sieve-jupyter deployments --json` and the side panel show); never
        the token."""
        return {
            "name": self.key,
            "version": self.version,
            "backend": self.backend,
            "url": self.url,
            "state": self.state,
            "health": self.health,
            "workers": self.workers,
            "ready_workers": self.ready_workers,
            "functions": list(self.functions),
            "default": self.default,
            "created_at": self.created_at,
            "started_at": self.started_at or self.created_at,
            "uptime": round(self.uptime, 1),
            "pid": self.pid,
            "container": self.container,
            "restarts": self.restarts,
            "token": self.token is not None,
        }

    def __str__(self) -> str:
        health = f", {self.health}" if self.health else ""
        return f"{self.key}:{self.version} ({self.backend}, {self.state}{health}) at {self.url}"


def uptime_text(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"
