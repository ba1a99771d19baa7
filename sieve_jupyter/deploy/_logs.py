"""A deployment's logs: its server's output and its workers' (setup output, what jobs printed,
workers starting, crashing and being replaced), the last lines and then, when following, as
they come -- across redeploys, which the name's log follows to the new version."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from sieve_jupyter._config import config
from sieve_jupyter._errors import FunctionNotFoundError
from sieve_jupyter.deploy._catalog import Catalog
from sieve_jupyter.deploy._model import Deployment, parse_name

__all__ = ["deployment_logs"]

_POLL_SECONDS = 0.2


def deployment_logs(name: str, *, lines: int = 100, follow: bool = False) -> Iterator[str]:
    """Lines of the logs of deployment `name` (``user/name`` for its current version,
    ``user/name:V`` for one): the last `lines`, then with `follow` each new one until the
    deployment is undeployed (or the caller stops).

    Raises:
        FunctionNotFoundError: no such deployment.
    """
    ref = parse_name(name, config.user)
    catalog = Catalog()
    deployment = catalog.find(ref)
    if not follow:
        yield from _tail(catalog, deployment, lines)
        return
    tail = lines
    while True:
        # (the last lines and what follows come from one reader, so nothing written between
        # them is lost)
        yield from _follow(catalog, deployment, tail)
        if ref.version is not None:
            return  # one version: its log ends with it
        try:
            successor = catalog.find(ref)
        except FunctionNotFoundError:
            yield f"--- {ref.key} is no longer deployed ---\n"
            return
        if successor.version == deployment.version:
            tail = 0  # (its server is restarting: what it said is shown already)
            time.sleep(_POLL_SECONDS)
            continue
        yield f"--- {ref.key}: version {successor.version} now serves ---\n"
        deployment, tail = successor, lines


def _tail(catalog: Catalog, deployment: Deployment, lines: int) -> Iterator[str]:
    if deployment.backend == "local":
        found, _ = catalog.local.logs(deployment, lines)
        yield from found
        return
    from sieve_jupyter.deploy._docker import docker_kind

    kind = docker_kind(catalog.registry, required=True)
    assert kind is not None
    yield from kind.logs(deployment, lines)


def _follow(catalog: Catalog, deployment: Deployment, lines: int) -> Iterator[str]:
    """The version's last `lines`, then what it writes from now on, until its server ends."""
    if deployment.backend == "docker":
        from sieve_jupyter.deploy._docker import docker_kind

        kind = docker_kind(catalog.registry, required=True)
        assert kind is not None
        yield from kind.engine.logs(deployment.container or "", lines=lines, follow=True)
        return
    _, path = catalog.local.logs(deployment, 0)
    yield from _follow_file(path, lambda: catalog.local.alive(deployment)[0], lines)


def _follow_file(path: Path, alive: Callable[[], bool], lines: int) -> Iterator[str]:
    """The file's last `lines`, then what is written to it, until `alive` says no more will
    be. When the log is rotated (`path` names a new file), the rest of the old one is read,
    then the new one from its start."""
    try:
        handle = path.open("r", errors="replace")
    except OSError:
        return
    text = handle.read()  # (up to the end as it is now; the rest is read as it comes)
    *complete, partial = text.split("\n")
    yield from (line + "\n" for line in (complete[-lines:] if lines else []))
    ended = False
    try:
        while True:
            chunk = handle.read()
            if chunk:
                *complete, partial = (partial + chunk).split("\n")
                yield from (line + "\n" for line in complete)
                continue
            if _rotated(path, handle.fileno()):
                handle.close()
                try:
                    handle = path.open("r", errors="replace")
                except OSError:
                    return
                continue
            if not alive():
                if not ended:  # (its log keeper may still write its last words: read again)
                    ended = True
                    time.sleep(_POLL_SECONDS)
                    continue
                if partial:
                    yield partial + "\n"
                return
            time.sleep(_POLL_SECONDS)
    finally:
        handle.close()


def _rotated(path: Path, fd: int) -> bool:
    """Whether `path` now names another file than the open `fd` (the log was rotated)."""
    try:
        return path.stat().st_ino != os.fstat(fd).st_ino
    except OSError:
        return False
