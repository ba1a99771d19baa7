"""The Docker backend's settings: how images are built and how containers are run.

Defaults come from ``SIEVE_DOCKER_*`` environment variables so a notebook, a script and CI can
all set them without code; `DockerBackend(options=...)` takes an explicit `DockerOptions`.
"""

from __future__ import annotations

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
}


@dataclass(frozen=True)
class DockerOptions:
    """Settings of the Docker backend.

    Args:
        base_image: one base image for every environment (overrides both templates).
        cpu_base_template: CPU base, ``{python}`` filled in (official ``python:X.Y-slim``).
        gpu_base_template: CUDA base, ``{cuda}``/``{ubuntu}``/``{python}`` filled in.
        ca_bundle: PEM file the images must trust (TLS re-signed by a proxy).
        network_mode: the workers' network (``"bridge"``, ``"host"``, ``"none"``, a network
            name); the kernel link is a Unix socket, so ``"none"`` works for offline models.
        build_network: network for ``RUN`` steps during builds (``"host"`` where the default
            bridge cannot reach package indexes); None uses the engine's default.
        src_dir: host folder mounted at ``/src`` (the worker's working directory, on its
            import path); None for the kernel's working directory when the worker starts;
            ``""`` to mount nothing.
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
        if not self.network_mode:
            raise ConfigurationError(
                "docker_network: must not be empty. Fix: use 'none', 'bridge', 'host' or the "
                "name of a Docker network."
            )

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

    def build_options(self) -> BuildOptions:
        """The image-builder part of these options."""
        return BuildOptions(
            base_image=self.base_image or None,
            cpu_base_template=self.cpu_base_template,
            gpu_base_template=self.gpu_base_template,
            ca_bundle=self.ca_bundle,
            repository=self.repository,
        )
