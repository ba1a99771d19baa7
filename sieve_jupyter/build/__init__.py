"""Spec -> Docker build context: base image choice, Dockerfile, content-hash tag, build logs.

Pure functions over the spec's `Environment`; nothing here talks to a Docker engine (that is
`sieve_jupyter.backends.docker`), so everything is testable without one.
"""

from __future__ import annotations

from sieve_jupyter.build._bases import (
    CPU_BASE_TEMPLATE,
    GPU_BASE_TEMPLATE,
    BaseImage,
    choose_base_image,
    cuda_ubuntu_release,
)
from sieve_jupyter.build._bundle import (
    BUNDLE_DIR,
    BUNDLE_PORT,
    SERVER_VENV,
    BundleImage,
    make_bundle_image,
)
from sieve_jupyter.build._context import (
    BUILD_SCHEMA,
    IPC_MOUNT,
    LABEL_PREFIX,
    RUNTIME_MOUNT,
    SRC_MOUNT,
    VENV_PYTHON,
    BuildContext,
    BuildOptions,
    installed_pins,
    make_build_context,
)
from sieve_jupyter.build._log import BuildLog

__all__ = [
    "installed_pins",
    "BUILD_SCHEMA",
    "BUNDLE_DIR",
    "BUNDLE_PORT",
    "CPU_BASE_TEMPLATE",
    "GPU_BASE_TEMPLATE",
    "IPC_MOUNT",
    "LABEL_PREFIX",
    "RUNTIME_MOUNT",
    "SERVER_VENV",
    "SRC_MOUNT",
    "VENV_PYTHON",
    "BaseImage",
    "BuildContext",
    "BuildLog",
    "BuildOptions",
    "BundleImage",
    "choose_base_image",
    "cuda_ubuntu_release",
    "make_build_context",
    "make_bundle_image",
]
