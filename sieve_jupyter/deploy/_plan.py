"""What one deploy starts: the bundle's files, the version, the server's settings, and the
values of the functions' declared `sieve.Env` variables (given to the server, never stored)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from sieve_jupyter.deploy._model import NameRef, version_string

__all__ = ["Plan", "content_digest"]

#: seconds a retiring version is given to finish its jobs in flight (its server's own grace
#: period, and a margin for the workers to stop)
RETIRE_SECONDS = 45


def content_digest(files: dict[str, bytes], settings: dict[str, Any]) -> str:
    """The content hash of a deploy: every file of the bundle and the settings that change
    what runs (not the token, not the values of secrets)."""
    digest = hashlib.sha256()
    digest.update(json.dumps(settings, sort_keys=True).encode())
    for path in sorted(files):
        data = files[path]
        digest.update(f"\0{path}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


@dataclass(frozen=True)
class Plan:
    """One version to start."""

    ref: NameRef
    counter: int
    digest: str
    files: dict[str, bytes] = field(repr=False)
    functions: tuple[str, ...]
    default: str
    workers: int
    host: str
    port: int | None
    token: str | None = field(repr=False)
    env: dict[str, str] = field(repr=False)
    gpu: bool = False
    #: where its workers run: "local" processes, or actors of a Ray cluster ("ray"); the
    #: Docker kind runs them in its container
    backend: str = "local"
    #: with backend "ray": the cluster (None: RAY_ADDRESS in the server's environment)
    ray_address: str | None = None

    @property
    def version(self) -> str:
        return version_string(self.counter, self.digest)

    @property
    def identity(self) -> str:
        """What the server is told it is: ``user/name:version``."""
        return f"{self.ref.key}:{self.version}"
