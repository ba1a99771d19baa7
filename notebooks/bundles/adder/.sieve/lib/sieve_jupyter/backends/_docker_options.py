"""The Docker backend's settings: how images are built and how containers are run.

`DockerOptions.current()` reads ``sieve.configure(docker_...)`` settings first, then
``SIEVE_DOCKER_*`` environment variables (so CI and scripts can set them without code), then
defaults; `DockerBackend(options=...)` takes an explicit `DockerOptions` instead.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sieve_jupyter._errors import ConfigurationError
from sieve_jupyter.build import CPU_BASE_TEMPLATE, GPU_BASE_TEMPLATE, BuildOptions

__all__ = ["ENV_VARS", "DockerOptions"]

#: environment variable -> the `DockerOptions` field it sets
ENV_VARS: dict[str, str] = {
    "SIEVE_DOCKER_BASE_IMAGE": "base_image",
    "SIEVE_DOCKER_CPU_BASE": "cpu_base_template",
    "SIEVE_DOCKER_GPU_BASE": "gpu_base_template",
    "SIEVE_DOCKER_CA_BUNDLE": "ca_bundle",
    "SIEVE_DOCKER_NETWORK": "network_mode",
    "SIEVE_DOCKER_BUILD_NETWORK": "build_network",
    "SIEVE_DOCKER_SRC": "src_dir",
    "SIEVE_DOCKER_MOUNTS": "mounts",
}


@dataclass(frozen=True)
class DockerOptions:
    """Settings of the Docker backend.

    Args:
        base_image: one base image for every environment (overrides both templates).
        cpu_base_template: CPU base, ``{python}`` filled in (official ``python:X.Y-slim``).
        gpu_base_template: CUDA base, ``{cuda}``/``{ubuntu}``/``{python}`` filled in.
        ca_bundle: PEM file the images must trust (TLS re-signed by a proxy).
        network_mode: the workers' network (``"none"``, ``"bridge"``, ``"host"``, a network
            name); the kernel link is a Unix socket, so ``"none"`` works unless `__setup__`
            downloads weights (then use ``"bridge"``).
        build_network: network for ``RUN`` steps during builds (``"host"`` where the default
            bridge cannot reach package indexes); None uses the engine's default.
        src_dir: host folder mounted at ``/src`` (the worker's working directory, on its
            import path); None for the kernel's working directory when the worker starts;
            ``""`` to mount nothing.
        mounts: more host folders for the workers, as ``"HOST[:CONTAINER][:ro]"`` strings
            (the container path defaults to the host path, so paths in arguments stay valid);
            the variable takes them comma-separated.
        repository: image name the content-hash tags are attached to.
        extra_labels: added to every container.
    """

    base_image: str | None = None
    cpu_base_template: str = CPU_BASE_TEMPLATE
    gpu_base_template: str = GPU_BASE_TEMPLATE
    ca_bundle: Path | None = None
    network_mode: str = "bridge"
    build_network: str | None = None
    src_dir: str | None = None
    mounts: tuple[str, ...] = ()
    repository: str = "sieve-jupyter-env"
    extra_labels: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, template, keys in (
            ("cpu_base_template", self.cpu_base_template, ("python",)),
            ("gpu_base_template", self.gpu_base_template, ("cuda", "python", "ubuntu")),
        ):
            try:
                template.format(python="3.11", cuda="12.6.3", ubuntu="22.04")
            except (KeyError, IndexError, ValueError) as exc:
                raise ConfigurationError(
                    f"docker_{name}: {template!r} is not a valid template ({exc!r}). Fix: use "
                    f"only the placeholders {', '.join('{' + k + '}' for k in keys)}."
                ) from None
        if isinstance(self.mounts, str):
            object.__setattr__(self, "mounts", tuple(m for m in self.mounts.split(",") if m))
        for mount in self.mounts:
            self.parse_mount(mount)
        if not self.network_mode:
            raise ConfigurationError(
                "docker_network: must not be empty. Fix: use 'none', 'bridge', 'host' or the "
                "name of a Docker network."
            )

    @staticmethod
    def parse_mount(text: str) -> tuple[str, str, bool]:
        """``"HOST[:CONTAINER][:ro]"`` -> (host, container, read_only).

        Raises:
            ConfigurationError: a path is not absolute or the mode is not ``ro``/``rw``.
        """
        parts = text.split(":")
        read_only = False
        if len(parts) > 1 and parts[-1] in ("ro", "rw"):
            read_only = parts.pop() == "ro"
        host, container = (
            (parts[0], parts[0]) if len(parts) == 1 else (parts[0], ":".join(parts[1:]))
        )
        if len(parts) > 2 or not host.startswith("/") or not container.startswith("/"):
            raise ConfigurationError(
                f"docker_mounts: {text!r} is not HOST[:CONTAINER][:ro] with absolute paths. "
                "Fix: write e.g. '/data/models:/models:ro' or '/data/shared'."
            )
        return host, container, read_only

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DockerOptions:
        """Options from ``SIEVE_DOCKER_*`` variables (see `ENV_VARS`); unset ones keep defaults.

        Raises:
            ConfigurationError: a variable holds an invalid value (named with its fix).
        """
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for var, name in ENV_VARS.items():
            value = environ.get(var)
            if value is None:
                continue
            values[name] = Path(value) if name == "ca_bundle" else value
        return cls(**values)  # type: ignore[arg-type]

    @classmethod
    def current(cls, environ: Mapping[str, str] | None = None) -> DockerOptions:
        """Options from ``sieve.configure(docker_base_image=, docker_network=,
        docker_ca_bundle=)`` where set (not left at their defaults), else `from_env`.

        Raises:
            ConfigurationError: a setting or variable holds an invalid value.
        """
        from sieve_jupyter._config import Config, config

        options = cls.from_env(environ)
        default = Config()
        changes: dict[str, object] = {}
        if config.docker_base_image != default.docker_base_image:
            changes["base_image"] = config.docker_base_image
        if config.docker_network != default.docker_network:
            changes["network_mode"] = config.docker_network
        if config.docker_ca_bundle != default.docker_ca_bundle:
            bundle = config.docker_ca_bundle
            changes["ca_bundle"] = Path(bundle) if bundle else None
        return dataclasses.replace(options, **changes) if changes else options  # type: ignore[arg-type]

    def build_options(self) -> BuildOptions:
        """The image-builder part of these options."""
        return BuildOptions(
            base_image=self.base_image or None,
            cpu_base_template=self.cpu_base_template,
            gpu_base_template=self.gpu_base_template,
            ca_bundle=self.ca_bundle,
            repository=self.repository,
        )
