"""The embedded default: workers are processes of this machine, in the kernel's own environment.

Local workers share the kernel's interpreter and packages, so they start in a fraction of a
second and need no Docker. What only a container can honour (apt packages, run commands, a CUDA
version, another Python) is reported once; missing pip requirements are a clear error.
"""

from __future__ import annotations

import importlib.metadata
import os
import signal
import subprocess
import sys
from typing import TYPE_CHECKING, Any

from packaging.requirements import InvalidRequirement, Requirement

from sieve_jupyter._errors import DependencyError
from sieve_jupyter.backends._base import (
    WORKER_MODULE,
    Backend,
    WorkerLaunch,
    WorkerProcess,
    image_only_settings,
)

if TYPE_CHECKING:
    from sieve_jupyter.spec import FunctionSpec

__all__ = ["LocalBackend", "LocalProcess"]


class LocalProcess(WorkerProcess):
    """A worker running as a child process in its own session (the kernel's interrupt button
    signals the kernel's process group, which must not reach warm workers)."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self._popen = popen

    @property
    def description(self) -> str:
        return f"pid {self._popen.pid}"

    @property
    def host_pid(self) -> int:
        return self._popen.pid

    def poll(self) -> int | None:
        return self._popen.poll()

    def terminate(self, grace: float = 2.0) -> None:
        if self._popen.poll() is not None:
            return
        try:
            self._popen.send_signal(signal.SIGTERM)
            self._popen.wait(grace)
        except subprocess.TimeoutExpired:
            self._popen.kill()
            self._popen.wait(5)
        except ProcessLookupError:
            pass

    def details(self) -> dict[str, Any]:
        return {"pid": self._popen.pid}


#: Names another interpreter for local workers (a server keeps its own packages apart from the
#: user's: a bundle's image runs its server in one virtualenv and the workers in another).
WORKER_PYTHON_VARIABLE = "SIEVE_WORKER_PYTHON"
_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def worker_python() -> str | None:
    """The interpreter named by ``SIEVE_WORKER_PYTHON`` when it is not this process's own."""
    python = os.environ.get(WORKER_PYTHON_VARIABLE)
    # (not realpath: two virtualenvs' interpreters link to the same binary, and differ)
    if not python or os.path.abspath(python) == os.path.abspath(sys.executable):
        return None
    return python


class LocalBackend(Backend):
    """Runs workers as local processes with the kernel's interpreter (or the one named by
    ``SIEVE_WORKER_PYTHON``)."""

    name = "local"

    def check(self, spec: FunctionSpec) -> list[str]:
        """Raise for missing pip requirements; return notes on container-only options."""
        if worker_python() is not None:
            # Another environment: its packages cannot be read from here, and the worker's
            # Python version is checked when it connects.
            return []
        missing, mismatched = _unmet_requirements(spec.environment.python_packages)
        if missing:
            raise DependencyError(
                f"{spec.name}: python_packages not installed in the kernel's environment: "
                f"{', '.join(missing)}. Local workers run in the kernel's environment. Fix: "
                f"pip install {' '.join(repr(m) for m in missing)} in it, or use "
                "backend='docker', which builds an isolated environment from the spec."
            )
        notes = []
        if mismatched:
            notes.append(
                "installed versions differ from python_packages: "
                + "; ".join(mismatched)
                + " (local workers use what the kernel has)."
            )
        env = spec.environment
        ignored = image_only_settings(spec)
        kernel_python = f"{sys.version_info[0]}.{sys.version_info[1]}"
        if env.python_version != kernel_python:
            ignored.append(
                f"python_version {env.python_version!r} (local workers run the kernel's "
                f"Python {kernel_python})"
            )
        if ignored:
            notes.append(
                "the local backend cannot honour "
                + ", ".join(ignored)
                + ". Use backend='docker' to build them into an image."
            )
        return notes

    def start_worker(self, launch: WorkerLaunch) -> LocalProcess:
        env = dict(os.environ)
        env.update(launch.env)
        python = worker_python()
        if python is None:
            # Code pickled by reference (functions from the kernel's own modules) must import
            # in the worker exactly as in the kernel.
            paths = [p or os.getcwd() for p in sys.path]
            env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        elif os.path.basename(_PACKAGE_PARENT) in ("site-packages", "dist-packages"):
            # This package is installed among others: the other interpreter has its own copy.
            env.pop("PYTHONPATH", None)
        else:
            # Another interpreter keeps its own packages: it gets this package, nothing else.
            env["PYTHONPATH"] = _PACKAGE_PARENT
        env["PYTHONUNBUFFERED"] = "1"
        # As on Sieve, a function without a GPU request sees no GPU.
        env["CUDA_VISIBLE_DEVICES"] = launch.gpu.visible_devices if launch.gpu else ""
        if launch.gpu:
            # The allocator numbers cards as nvidia-smi does (by PCI bus); CUDA would otherwise
            # number them fastest first, and the worker could land on someone else's card.
            env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
        boot_log = open(launch.ipc_dir / "boot.log", "wb")  # noqa: SIM115 - child owns it
        try:
            popen = subprocess.Popen(
                [
                    python or sys.executable,
                    "-m",
                    WORKER_MODULE,
                    "--dir",
                    str(launch.ipc_dir),
                    "--worker-id",
                    launch.worker_id,
                ],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=boot_log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        finally:
            boot_log.close()
        return LocalProcess(popen)


def _unmet_requirements(requirements: tuple[str, ...]) -> tuple[list[str], list[str]]:
    missing: list[str] = []
    mismatched: list[str] = []
    for text in requirements:
        try:
            requirement = Requirement(text)
        except InvalidRequirement:
            continue  # the spec layer already rejected malformed ones
        if requirement.url:
            continue  # a VCS/URL install cannot be compared; trust the user
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        try:
            version = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(text)
            continue
        if requirement.specifier and not requirement.specifier.contains(version, prereleases=True):
            mismatched.append(f"{requirement.name} {version} (asked {requirement.specifier})")
    return missing, mismatched
