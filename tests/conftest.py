"""Shared fixtures: the backends the behaviour tests run against, and a clean manager per test."""

from __future__ import annotations

import itertools
import os
import re
import signal
from collections.abc import Callable, Iterator

import pytest
from support import backend_ready

from sieve_jupyter.manager import get_manager

#: backends every shared behaviour test runs on; the docker and ray parameters carry their
#: tier's marker (their fixtures decide whether an engine or a cluster can run)
BEHAVIOUR_BACKENDS = [
    pytest.param("local", id="local"),
    pytest.param("docker", id="docker", marks=pytest.mark.docker),
    pytest.param("ray", id="ray", marks=pytest.mark.ray),
]

_counter = itertools.count()

#: the docker tier's fixtures (engine, base image, settings) and the ray tier's (a local two-node
#: cluster), needed by the "docker" and "ray" parameters
pytest_plugins = ["docker_tier", "ray_tier"]


#: tiers run cheapest first; the browser tier last (Playwright's sync API leaves an event loop
#: behind on the main thread, which later asyncio-based tests would trip over)
_TIER_ORDER = {
    "unit": 0,
    "integration": 1,
    "kernel": 2,
    "docker": 3,
    "ray": 3,
    "packaging": 4,
    "browser": 5,
}


#: the marker each tier's folder gives every test in it (so `-m "not docker"` leaves it out)
_FOLDER_MARKERS = {
    "kernel": "kernel",
    "docker": "docker",
    "browser": "browser",
    "serve": "serve",
    "packaging": "packaging",
    "ray": "ray",
    "deploy": "serve",  # (deployments are served bundles)
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def folder(item: pytest.Item) -> str:
        parts = item.path.relative_to(item.config.rootpath).parts
        return parts[1] if len(parts) > 2 and parts[0] == "tests" else ""

    for item in items:
        marker = _FOLDER_MARKERS.get(folder(item))
        if marker is not None:
            item.add_marker(getattr(pytest.mark, marker))
    items.sort(key=lambda item: _TIER_ORDER.get(folder(item), 1))  # stable within a tier


@pytest.fixture(params=BEHAVIOUR_BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The backend name a behaviour test registers its functions with."""
    return backend_ready(request, request.param)


@pytest.fixture
def unique(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Make a function name unique to this test (the registry is per process)."""
    stem = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40]

    def make(name: str) -> str:
        return f"{name}-{stem}-{next(_counter)}"

    return make


@pytest.fixture(autouse=True)
def _stop_new_functions() -> Iterator[None]:
    """Unregister (and stop the workers of) every function a test registered."""
    manager = get_manager()
    before = {r.name for r in manager.records()}
    yield
    for record in manager.records():
        if record.name not in before:
            manager.unregister(record.name)


@pytest.fixture
def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture
def interruptible() -> Iterator[None]:
    """SIGINT raises `KeyboardInterrupt` during the test, as in a notebook kernel. (A suite
    started in the background by a non-interactive shell inherits SIGINT as *ignored*, and no
    interrupt could ever be raised.)"""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
