"""sieve-jupyter: the Sieve programming model, native to Jupyter.

    import sieve_jupyter as sieve

    @sieve.function(name="multiplier")
    def multiply(x1: int, x2: int) -> int:
        return x1 * x2

    multiply.run(2, 3)     # 6, from a warm worker process

Names are loaded on first use, so importing the package is cheap: worker processes import
`sieve_jupyter.runtime` without paying for the notebook-side machinery.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "Audio": "sieve_jupyter.runtime",
    "BackendError": "sieve_jupyter._errors",
    "BuildError": "sieve_jupyter._errors",
    "ConfigurationError": "sieve_jupyter._errors",
    "DependencyError": "sieve_jupyter._errors",
    "Env": "sieve_jupyter.spec",
    "EnvironmentVariableError": "sieve_jupyter._errors",
    "FatalException": "sieve_jupyter.runtime",
    "File": "sieve_jupyter.runtime",
    "FunctionNotFoundError": "sieve_jupyter._errors",
    "FunctionSpec": "sieve_jupyter.spec",
    "GpuUnavailableError": "sieve_jupyter._errors",
    "Image": "sieve_jupyter.runtime",
    "JobCancelledError": "sieve_jupyter._errors",
    "JobFuture": "sieve_jupyter.manager",
    "JobStatus": "sieve_jupyter.manager",
    "Metadata": "sieve_jupyter.spec",
    "Model": "sieve_jupyter.sdk",
    "PythonVersionMismatchError": "sieve_jupyter._errors",
    "RemoteError": "sieve_jupyter._errors",
    "SetupError": "sieve_jupyter._errors",
    "SieveError": "sieve_jupyter._errors",
    "SpecError": "sieve_jupyter._errors",
    "Video": "sieve_jupyter.runtime",
    "WorkerCrashedError": "sieve_jupyter._errors",
    "WorkerError": "sieve_jupyter._errors",
    "config": "sieve_jupyter._config",
    "configure": "sieve_jupyter._config",
    "form": "sieve_jupyter.jupyter.widgets",
    "function": "sieve_jupyter.sdk",
    "gpu": "sieve_jupyter.spec",
    "progress": "sieve_jupyter.jupyter.widgets",
    "report_progress": "sieve_jupyter.runtime",
}

__all__ = sorted([*_EXPORTS, "__version__", "load_ipython_extension", "unload_ipython_extension"])


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sieve_jupyter' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return list(__all__)


def load_ipython_extension(ipython: Any) -> None:
    """`%load_ext sieve_jupyter`: register the magics, the display hooks and the comm channel."""
    from sieve_jupyter.jupyter import load_ipython_extension as _load

    _load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """`%unload_ext sieve_jupyter`: remove what `load_ipython_extension` added."""
    from sieve_jupyter.jupyter import unload_ipython_extension as _unload

    _unload(ipython)


if TYPE_CHECKING:  # pragma: no cover - static view of the lazy names
    from sieve_jupyter._config import config, configure
    from sieve_jupyter._errors import (
        BackendError,
        BuildError,
        ConfigurationError,
        DependencyError,
        EnvironmentVariableError,
        FunctionNotFoundError,
        GpuUnavailableError,
        JobCancelledError,
        PythonVersionMismatchError,
        RemoteError,
        SetupError,
        SieveError,
        SpecError,
        WorkerCrashedError,
        WorkerError,
    )
    from sieve_jupyter.jupyter.widgets import form, progress
    from sieve_jupyter.manager import JobFuture, JobStatus
    from sieve_jupyter.runtime import Audio, FatalException, File, Image, Video, report_progress
    from sieve_jupyter.sdk import Model, function
    from sieve_jupyter.spec import Env, FunctionSpec, Metadata, gpu
