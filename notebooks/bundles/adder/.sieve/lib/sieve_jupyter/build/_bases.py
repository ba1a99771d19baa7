"""Which base image an environment starts from: official Python for CPU, official CUDA for GPU.

CUDA images carry no Python, so the table also records each base's distribution and the Python
it ships natively; the Dockerfile installs the requested one (from the distribution, or from the
deadsnakes archive on Ubuntu when the distribution's own Python is a different version).
"""

from __future__ import annotations

from dataclasses import dataclass

from sieve_jupyter.spec._cuda import CUDA_VERSIONS, resolve_cuda_version

__all__ = [
    "CPU_BASE_TEMPLATE",
    "GPU_BASE_TEMPLATE",
    "UBUNTU_PYTHON",
    "BaseImage",
    "choose_base_image",
    "cuda_ubuntu_release",
]

#: Official CPU base: Debian slim with the requested CPython already installed.
CPU_BASE_TEMPLATE = "python:{python}-slim"
#: Official CUDA runtime base (no cuDNN: PyTorch and JAX wheels bring their own).
GPU_BASE_TEMPLATE = "nvidia/cuda:{cuda}-runtime-ubuntu{ubuntu}"

#: The Python each Ubuntu release ships as ``python3``.
UBUNTU_PYTHON: dict[str, str] = {"20.04": "3.8", "22.04": "3.10", "24.04": "3.12"}


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def cuda_ubuntu_release(cuda_version: str) -> str:
    """The Ubuntu release NVIDIA publishes runtime images of `cuda_version` for (the newest LTS
    that every patch of that line has).

    Raises:
        SpecError: `cuda_version` is not in the spec's CUDA table.
    """
    version = resolve_cuda_version(cuda_version)
    assert version in CUDA_VERSIONS  # resolve_cuda_version only returns table entries
    if _key(version) < (11, 7):
        return "20.04"
    if _key(version) < (13, 0):
        return "22.04"
    return "24.04"


@dataclass(frozen=True)
class BaseImage:
    """The image a build starts from and what the Dockerfile must add to it.

    Attributes:
        image: the ``FROM`` reference.
        python_preinstalled: the image is known to have the requested ``pythonX.Y`` (official
            ``python:`` images); otherwise the Dockerfile installs it when it is missing.
        ubuntu_native_python: for CUDA bases, the Python the Ubuntu release ships (decides
            whether deadsnakes is needed); empty when unknown.
    """

    image: str
    python_preinstalled: bool = False
    ubuntu_native_python: str = ""


def choose_base_image(
    python_version: str,
    cuda_version: str | None,
    *,
    base_image: str | None = None,
    cpu_template: str = CPU_BASE_TEMPLATE,
    gpu_template: str = GPU_BASE_TEMPLATE,
) -> BaseImage:
    """Pick the base for an environment: `base_image` if given, else the CPU or CUDA template.

    Args:
        python_version: ``"3.X"``, the Python the image must run (the kernel's).
        cuda_version: a CUDA release for GPU environments, None for CPU ones.
        base_image: an explicit base (it must provide ``pythonX.Y``, or apt to install it).
        cpu_template / gpu_template: format strings with ``{python}``, ``{cuda}``, ``{ubuntu}``.

    Raises:
        SpecError: `cuda_version` is unknown.
    """
    if base_image:
        return BaseImage(base_image)
    if cuda_version is None:
        image = cpu_template.format(python=python_version, cuda="", ubuntu="")
        # Only the official template is known to carry the right Python already.
        return BaseImage(image, python_preinstalled=cpu_template == CPU_BASE_TEMPLATE)
    cuda = resolve_cuda_version(cuda_version)
    ubuntu = cuda_ubuntu_release(cuda)
    image = gpu_template.format(python=python_version, cuda=cuda, ubuntu=ubuntu)
    return BaseImage(image, ubuntu_native_python=UBUNTU_PYTHON.get(ubuntu, ""))
