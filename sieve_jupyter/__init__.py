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
import sys
from typing import TYPE_CHECKING, Any

from sieve_jupyter._hooks import (
    deploy_hooks,
    deployment_listers,
    manager_created_hooks,
    name_resolvers,
)
from sieve_jupyter._version import __version__

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "Audio": "sieve_jupyter.runtime",
    "BackendError": "sieve_jupyter._errors",
    "BuildError": "sieve_jupyter._errors",
    "ConfigurationError": "sieve_jupyter._errors",
    "DependencyError": "sieve_jupyter._errors",
    "DeployError": "sieve_jupyter._errors",
    "DeployResult": "sieve_jupyter.deploy",
    "Deployment": "sieve_jupyter.deploy",
    "Env": "sieve_jupyter.spec",
    "EnvironmentVariableError": "sieve_jupyter._errors",
    "FatalException": "sieve_jupyter.runtime",
    "File": "sieve_jupyter.runtime",
    "FunctionHandle": "sieve_jupyter.sdk",
    "FunctionNotFoundError": "sieve_jupyter._errors",
    "FunctionSpec": "sieve_jupyter.spec",
    "GpuFallbackWarning": "sieve_jupyter._errors",
    "GpuUnavailableError": "sieve_jupyter._errors",
    "Image": "sieve_jupyter.runtime",
    "InputError": "sieve_jupyter._errors",
    "InstallationError": "sieve_jupyter._errors",
    "JobCancelledError": "sieve_jupyter._errors",
    "JobFuture": "sieve_jupyter.manager",
    "JobStatus": "sieve_jupyter.manager",
    "Metadata": "sieve_jupyter.spec",
    "Model": "sieve_jupyter.sdk",
    "ModelHandle": "sieve_jupyter.sdk",
    "PythonVersionMismatchError": "sieve_jupyter._errors",
    "RemoteError": "sieve_jupyter._errors",
    "ResultReleasedError": "sieve_jupyter._errors",
    "SetupError": "sieve_jupyter._errors",
    "SieveError": "sieve_jupyter._errors",
    "SieveWarning": "sieve_jupyter._errors",
    "SpecError": "sieve_jupyter._errors",
    "Video": "sieve_jupyter.runtime",
    "WorkerCrashedError": "sieve_jupyter._errors",
    "SwapError": "sieve_jupyter._errors",
    "WorkerError": "sieve_jupyter._errors",
    "ExportError": "sieve_jupyter._errors",
    "as_completed": "sieve_jupyter.manager",
    "config": "sieve_jupyter._config",
    "deploy": "sieve_jupyter.deploy",
    "deployments": "sieve_jupyter.deploy",
    "export": "sieve_jupyter.bundle",
    "configure": "sieve_jupyter._config",
    "form": "sieve_jupyter.jupyter.widgets",
    "function": "sieve_jupyter.sdk",
    "gather": "sieve_jupyter.manager",
    "gpu": "sieve_jupyter.spec",
    "load_yaml": "sieve_jupyter.modelyaml",
    "progress": "sieve_jupyter.jupyter.widgets",
    "report_progress": "sieve_jupyter.runtime",
    "undeploy": "sieve_jupyter.deploy",
    "wait": "sieve_jupyter.manager",
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


def _attach_notebook_layer(manager: Any) -> None:
    # In a Jupyter kernel, worker output lands in the right cell and the side panel can connect
    # as soon as the manager exists, even when the user only imported the package.
    if "ipykernel" in sys.modules:
        from sieve_jupyter.jupyter import attach_running_kernel

        attach_running_kernel(manager)


manager_created_hooks.append(_attach_notebook_layer)

if "IPython" in sys.modules:
    # The package's own errors (a bad argument, an unknown name) show the caller's frames
    # only, from the first one: they say what is wrong and how to fix it.
    from sieve_jupyter.jupyter._tracebacks import install_error_display

    install_error_display()


class _Deployments:
    """`function.get("user/name")` finds deployments (loaded when a name is not a function of
    this process, so importing the package stays cheap)."""

    def resolve(self, name: str) -> Any | None:
        from sieve_jupyter.deploy import DeploymentResolver

        return DeploymentResolver().resolve(name)

    def known(self) -> list[str]:
        from sieve_jupyter.deploy import DeploymentResolver

        return DeploymentResolver().known()


def _deploy_handle(handle: Any, **options: Any) -> Any:
    from sieve_jupyter.deploy import deploy

    return deploy(handle, **options)


class _PanelDeployments:
    """The side panel's Deployments section: this user's deployments, and undeploy."""

    def user(self) -> str:
        from sieve_jupyter._config import config

        return config.user

    def rows(self) -> list[dict[str, Any]]:
        from sieve_jupyter.deploy import deployments

        return [d.describe() for d in deployments(user=self.user())]

    def undeploy(self, name: str) -> None:
        from sieve_jupyter.deploy import undeploy

        undeploy(name, log=lambda line: None)


name_resolvers.append(_Deployments())
deploy_hooks.append(_deploy_handle)
deployment_listers.append(_PanelDeployments())


def load_ipython_extension(ipython: Any) -> None:
    """`%load_ext sieve_jupyter`: register the magics, the display hooks and the comm channel."""
    from sieve_jupyter.jupyter import load_ipython_extension as _load
    from sieve_jupyter.jupyter._magics import EXTRA_COMMANDS

    # The layers above the notebook layer add their own subcommands (imported when used).
    EXTRA_COMMANDS.setdefault("export", (_export_command, _EXPORT_HELP))
    EXTRA_COMMANDS.setdefault("serve", (_serve_command, _SERVE_HELP))
    for command, (handler, text) in _deployment_commands().items():
        EXTRA_COMMANDS.setdefault(command, (handler, text))
    _load(ipython)


_EXPORT_HELP = (
    "%sieve export NAME... DIR      a bundle of these functions and the cells they "
    "need (--default, --base-image; --format model.yaml: a model.yaml instead)"
)
_SERVE_HELP = (
    "%sieve serve NAME... [--port N] serve them over HTTP until the kernel stops "
    "(--stop NAME to stop)"
)


def _export_command(words: list[str]) -> Any:
    from sieve_jupyter.bundle._magic import export_command

    return export_command(words)


def _serve_command(words: list[str]) -> Any:
    from sieve_jupyter.serve._magic import serve_command

    return serve_command(words)


_DEPLOYMENT_HELP = {
    "deploy": "%sieve deploy NAME... [--backend B] [--workers N] [--force]\n"
    "                               deploy: it serves after the kernel is gone, "
    "as user/NAME",
    "deployments": "%sieve deployments             this machine's deployments, with health",
    "undeploy": "%sieve undeploy USER/NAME      stop a deployment and remove all of it",
    "logs --deployment": "%sieve logs NAME --deployment [-n N] [-f]\n"
    "                               a deployment's server and worker "
    "logs (-f: follow)",
}


def _deployment_commands() -> dict[str, tuple[Any, str]]:
    def handler(command: str) -> Any:
        def run(words: list[str]) -> Any:
            from sieve_jupyter.deploy._magic import COMMANDS

            return COMMANDS[command](words)

        return run

    return {command: (handler(command), text) for command, text in _DEPLOYMENT_HELP.items()}


def unload_ipython_extension(ipython: Any) -> None:
    """`%unload_ext sieve_jupyter`: remove what `load_ipython_extension` added."""
    from sieve_jupyter.jupyter import unload_ipython_extension as _unload

    _unload(ipython)


if TYPE_CHECKING:  # pragma: no cover - static view of the lazy names
    from sieve_jupyter._config import (
        config as config,
    )
    from sieve_jupyter._config import (
        configure as configure,
    )
    from sieve_jupyter._errors import (
        BackendError as BackendError,
    )
    from sieve_jupyter._errors import (
        BuildError as BuildError,
    )
    from sieve_jupyter._errors import (
        ConfigurationError as ConfigurationError,
    )
    from sieve_jupyter._errors import (
        DependencyError as DependencyError,
    )
    from sieve_jupyter._errors import (
        DeployError as DeployError,
    )
    from sieve_jupyter._errors import (
        EnvironmentVariableError as EnvironmentVariableError,
    )
    from sieve_jupyter._errors import (
        ExportError as ExportError,
    )
    from sieve_jupyter._errors import (
        FunctionNotFoundError as FunctionNotFoundError,
    )
    from sieve_jupyter._errors import (
        GpuFallbackWarning as GpuFallbackWarning,
    )
    from sieve_jupyter._errors import (
        GpuUnavailableError as GpuUnavailableError,
    )
    from sieve_jupyter._errors import (
        InputError as InputError,
    )
    from sieve_jupyter._errors import (
        InstallationError as InstallationError,
    )
    from sieve_jupyter._errors import (
        JobCancelledError as JobCancelledError,
    )
    from sieve_jupyter._errors import (
        PythonVersionMismatchError as PythonVersionMismatchError,
    )
    from sieve_jupyter._errors import (
        RemoteError as RemoteError,
    )
    from sieve_jupyter._errors import (
        ResultReleasedError as ResultReleasedError,
    )
    from sieve_jupyter._errors import (
        SetupError as SetupError,
    )
    from sieve_jupyter._errors import (
        SieveError as SieveError,
    )
    from sieve_jupyter._errors import (
        SieveWarning as SieveWarning,
    )
    from sieve_jupyter._errors import (
        SpecError as SpecError,
    )
    from sieve_jupyter._errors import (
        SwapError as SwapError,
    )
    from sieve_jupyter._errors import (
        WorkerCrashedError as WorkerCrashedError,
    )
    from sieve_jupyter._errors import (
        WorkerError as WorkerError,
    )
    from sieve_jupyter.bundle import (
        export as export,
    )
    from sieve_jupyter.deploy import (
        Deployment as Deployment,
    )
    from sieve_jupyter.deploy import (
        DeployResult as DeployResult,
    )
    from sieve_jupyter.deploy import (
        deploy as deploy,
    )
    from sieve_jupyter.deploy import (
        deployments as deployments,
    )
    from sieve_jupyter.deploy import (
        undeploy as undeploy,
    )
    from sieve_jupyter.jupyter.widgets import (
        form as form,
    )
    from sieve_jupyter.jupyter.widgets import (
        progress as progress,
    )
    from sieve_jupyter.manager import (
        JobFuture as JobFuture,
    )
    from sieve_jupyter.manager import (
        JobStatus as JobStatus,
    )
    from sieve_jupyter.manager import (
        as_completed as as_completed,
    )
    from sieve_jupyter.manager import (
        gather as gather,
    )
    from sieve_jupyter.manager import (
        wait as wait,
    )
    from sieve_jupyter.modelyaml import (
        load_yaml as load_yaml,
    )
    from sieve_jupyter.runtime import (
        Audio as Audio,
    )
    from sieve_jupyter.runtime import (
        FatalException as FatalException,
    )
    from sieve_jupyter.runtime import (
        File as File,
    )
    from sieve_jupyter.runtime import (
        Image as Image,
    )
    from sieve_jupyter.runtime import (
        Video as Video,
    )
    from sieve_jupyter.runtime import (
        report_progress as report_progress,
    )
    from sieve_jupyter.sdk import (
        FunctionHandle as FunctionHandle,
    )
    from sieve_jupyter.sdk import (
        Model as Model,
    )
    from sieve_jupyter.sdk import (
        ModelHandle as ModelHandle,
    )
    from sieve_jupyter.sdk import (
        function as function,
    )
    from sieve_jupyter.spec import (
        Env as Env,
    )
    from sieve_jupyter.spec import (
        FunctionSpec as FunctionSpec,
    )
    from sieve_jupyter.spec import (
        Metadata as Metadata,
    )
    from sieve_jupyter.spec import (
        gpu as gpu,
    )
