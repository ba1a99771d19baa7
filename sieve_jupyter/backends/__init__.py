"""Backends start workers: local processes (the default), Docker containers, Ray actors."""

from __future__ import annotations

import importlib

from sieve_jupyter._errors import ConfigurationError
from sieve_jupyter._imports import installation_error
from sieve_jupyter.backends._base import (
    Backend,
    CallBatch,
    GpuAssignment,
    LinkLaunch,
    LinkReceiver,
    Unsendable,
    WorkerLaunch,
    WorkerLink,
    WorkerProcess,
)

__all__ = [
    "BACKENDS",
    "Backend",
    "CallBatch",
    "GpuAssignment",
    "LinkLaunch",
    "LinkReceiver",
    "Unsendable",
    "WorkerLaunch",
    "WorkerLink",
    "WorkerProcess",
    "create_backend",
]

#: backend name -> "module:Class", imported only when first used (docker and ray are extras);
#: the names are those `sieve.configure(backend=...)` accepts (`_config.BACKEND_NAMES`)
BACKENDS: dict[str, str] = {
    "local": "sieve_jupyter.backends.local:LocalBackend",
    "docker": "sieve_jupyter.backends.docker:DockerBackend",
    "ray": "sieve_jupyter.backends.ray:RayBackend",
}
#: backend name -> the extra that installs its third-party dependencies (absent: core only)
_EXTRAS: dict[str, str] = {"docker": "docker", "ray": "ray"}


def create_backend(name: str) -> Backend:
    """Instantiate the backend registered under `name`.

    Raises:
        ConfigurationError: the name is unknown, or a third-party module the backend needs is
            missing (the message names the extra that installs it).
        InstallationError: a module of sieve-jupyter itself is missing (a broken installation).
    """
    try:
        target = BACKENDS[name]
    except KeyError:
        known = ", ".join(sorted(BACKENDS))
        raise ConfigurationError(
            f"backend: unknown backend {name!r}. Fix: use one of {known}."
        ) from None
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        broken = installation_error(exc, f"the {name!r} backend")
        if broken is not None:
            raise broken from exc
        missing = exc.name or str(exc)
        extra = _EXTRAS.get(name)
        if extra is None:
            raise ConfigurationError(
                f"backend: the {name!r} backend cannot import {missing}, a dependency of "
                "sieve-jupyter. Fix: pip install 'sieve-jupyter' (it installs what is missing)."
            ) from exc
        raise ConfigurationError(
            f"backend: the {name!r} backend needs an optional dependency ({missing}). "
            f"Fix: pip install 'sieve-jupyter[{extra}]'."
        ) from exc
    backend: Backend = getattr(module, class_name)()
    return backend
