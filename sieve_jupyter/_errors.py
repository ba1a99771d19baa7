"""The exceptions sieve-jupyter raises, in one hierarchy.

    SieveError                          base of everything raised by sieve-jupyter
    ├── SpecError (ValueError)          a bad decorator argument, magic option or model.yaml;
    │   │                               raised at decoration time, names `field` and `fix`
    │   └── ModelYamlError              a model.yaml is invalid: each problem says
    │                                   FILE:LINE:COL, the key path, what is wrong and the fix
    ├── InputError (ValueError)         an argument (of a call, or a form field) does not fit
    │                                   the input's type; names `field` and `fix`, nothing is
    │                                   queued
    ├── ConfigurationError (ValueError) a bad `sieve.configure(...)` value
    ├── FunctionNotFoundError (LookupError)
    │                                   `function.get` of a name this kernel has not registered
    ├── EnvironmentVariableError        a declared `sieve.Env` is missing from the kernel's
    │                                   environment; raised before any worker starts
    ├── GpuUnavailableError             the requested GPU is not on this machine
    ├── DependencyError                 a local worker cannot honour `python_packages`, or a
    │                                   feature needs an extra that is not installed
    ├── ExportError                     code cannot be captured into a bundle (a name it needs
    │                                   is undefined, a cell cannot be read); names the cell
    ├── DeployError                     a deployment could not be started or changed (its
    │                                   setup failed, its image did not build): says why, and
    │                                   which version still serves
    ├── InstallationError               a module of sieve-jupyter itself cannot be imported:
    │                                   the installation is incomplete (no extra brings it back)
    ├── BackendError                    a backend could not prepare or start workers
    │   └── BuildError                  an image build failed (carries the failing step and
    │                                   the tail of its log)
    ├── WorkerError                     something went wrong in a worker, not in the user's call
    │   ├── SetupError                  `__setup__` raised (carries the remote traceback)
    │   ├── WorkerCrashedError          the worker process died while running the job
    │   ├── SwapError                   re-registered code (a hot swap) failed to load in a warm
    │   │                               worker; nothing changed, the previous code answers
    │   └── PythonVersionMismatchError  the worker's Python minor version differs from the kernel's
    ├── RemoteError                     a user exception whose type could not be rebuilt in the
    │                                   kernel; carries `type_name`, `message`, `traceback`
    ├── JobCancelledError (concurrent.futures.CancelledError)
    │                                   raised by `.run()` when its job was cancelled
    └── ResultReleasedError (LookupError)
                                        the result of a job looked up in the job history
                                        (`sieve.job`, the panel) was in shared memory and is
                                        gone: the history keeps such results only while
                                        something else holds them

Warnings (said once, the work goes on):

    SieveWarning (UserWarning)          something asked for cannot be honoured here and is
    │                                   ignored (container-only options on local workers, ...)
    └── GpuFallbackWarning              a GPU function runs on the CPU (gpu_fallback="cpu")

A user exception raised in a worker re-raises in the kernel with its own type when it can be
unpickled there; its remote traceback is attached as `__cause__` (a `RemoteTraceback`) and as
the attribute `remote_traceback`.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BackendError",
    "BuildError",
    "ConfigurationError",
    "DependencyError",
    "DeployError",
    "EnvironmentVariableError",
    "ExportError",
    "FunctionNotFoundError",
    "GpuFallbackWarning",
    "GpuUnavailableError",
    "InputError",
    "InstallationError",
    "JobCancelledError",
    "ModelYamlError",
    "PythonVersionMismatchError",
    "RemoteError",
    "RemoteTraceback",
    "ResultReleasedError",
    "SetupError",
    "SieveError",
    "SieveWarning",
    "SpecError",
    "SwapError",
    "WorkerCrashedError",
    "WorkerError",
    "YamlProblem",
]


class SieveError(Exception):
    """Base class of every exception raised by sieve-jupyter."""


class _FieldError(SieveError, ValueError):
    """A value at a named field is wrong; the message says what and how to fix it."""

    def __init__(self, field: str, problem: str, fix: str = "") -> None:
        self.field = field
        self.problem = problem
        self.fix = fix
        text = f"{field}: {problem}"
        if fix:
            text += f"{'' if problem.endswith(('.', '!', '?')) else '.'} Fix: {fix}"
        super().__init__(text)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.field, self.problem, self.fix))


class SpecError(_FieldError):
    """A function's declaration is invalid.

    Attributes:
        field: the decorator keyword / option / yaml key at fault (e.g. ``"gpu.split"``).
        problem: what is wrong with it.
        fix: one sentence telling the user what to write instead.
    """


@dataclass(frozen=True)
class YamlProblem:
    """One problem in a model.yaml, where it is and how to fix it.

    Attributes:
        file: the file as the user named it (e.g. ``model.yaml``).
        line, column: 1-based position of the value (or key) at fault.
        key_path: where in the document, e.g. ``models[0].runtime.load.entrypoint``.
        problem: what is wrong. fix: what to write instead.
    """

    file: str
    line: int
    column: int
    key_path: str
    problem: str
    fix: str = ""

    def __str__(self) -> str:
        text = f"{self.file}:{self.line}:{self.column}: {self.key_path or '(document)'}: "
        text += self.problem
        return f"{text} Fix: {self.fix}" if self.fix else text


class ModelYamlError(SpecError):
    """A model.yaml cannot be loaded; raised before anything is cloned, built or run where
    the problem allows it.

    Attributes:
        problems: every problem found (at least one), each a `YamlProblem`.
        field, problem, fix: those of the first problem (``field`` is its key path).
    """

    def __init__(self, problems: Sequence[YamlProblem]) -> None:
        if not problems:
            raise ValueError("ModelYamlError needs at least one problem")
        self.problems = tuple(problems)
        first = self.problems[0]
        super().__init__(first.key_path, first.problem, first.fix)
        if len(self.problems) > 1:
            lines = [f"{len(self.problems)} problems:", *(f"  {p}" for p in self.problems)]
            self.args = ("\n".join(lines),)
        else:
            self.args = (str(first),)

    def __str__(self) -> str:
        return str(self.args[0])

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.problems,))


class InputError(_FieldError):
    """A value given for a function's input (a `.run()` / `.push()` argument, or a form field)
    does not fit its type hint; nothing was queued.

    Attributes:
        field: the parameter at fault. problem, fix: as for `SpecError`.
    """


class ConfigurationError(SieveError, ValueError):
    """A value given to ``sieve.configure`` is invalid."""


class FunctionNotFoundError(SieveError, LookupError):
    """``sieve.function.get`` was asked for a name that is not registered in this kernel."""


class EnvironmentVariableError(SieveError):
    """A declared ``sieve.Env`` has no value in the kernel's environment and no default."""


class GpuUnavailableError(SieveError):
    """The GPU a function asks for is not present on this machine."""


class DependencyError(SieveError):
    """A package is missing: one that `python_packages` asks for, in the kernel's environment,
    where a local worker runs; or an optional one a feature needs (the message names the extra
    that installs it)."""


class ExportError(SieveError):
    """Code cannot be captured into a bundle; the message names the cell and the name at fault
    and says how to fix it."""


class DeployError(SieveError):
    """A deployment could not be started or changed: a new version's setup failed, its image
    did not build, its server exited. The message says why and which version (if any) still
    serves the name; a failed redeploy leaves the old version as it was."""


class InstallationError(SieveError):
    """A module of sieve-jupyter itself is missing or cannot be imported: the installation (or
    the distribution it came from) is incomplete. No optional extra provides it, so the message
    says how to reinstall instead."""


class BackendError(SieveError):
    """A backend could not prepare an environment or start a worker."""


class BuildError(BackendError):
    """An image build failed.

    Attributes:
        step: the build step that failed (e.g. ``"RUN pip install ..."``), if known.
        log_tail: the last lines of the build log.
    """

    def __init__(self, message: str, *, step: str = "", log_tail: str = "") -> None:
        self.step = step
        self.log_tail = log_tail
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_build_error, (str(self), self.step, self.log_tail))


def _rebuild_build_error(message: str, step: str, log_tail: str) -> BuildError:
    return BuildError(message, step=step, log_tail=log_tail)


class WorkerError(SieveError):
    """A worker failed for a reason other than the user's call raising."""


class SetupError(WorkerError):
    """``__setup__`` raised in the worker.

    Attributes:
        remote_traceback: the formatted traceback from the worker.
    """

    def __init__(self, message: str, remote_traceback: str = "") -> None:
        self.remote_traceback = remote_traceback
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.remote_traceback))


class WorkerCrashedError(WorkerError):
    """The worker process died (segfault, ``os._exit``, OOM kill) while running the job."""


class SwapError(WorkerError):
    """New code for a warm model (a re-run cell with an unchanged ``__setup__``) failed to load
    in a worker. The registration is unchanged: the previous code still answers calls."""


class PythonVersionMismatchError(WorkerError):
    """The worker's Python minor version differs from the kernel's, so pickles cannot cross."""


class RemoteTraceback(Exception):
    """Carries a worker-side traceback as the ``__cause__`` of a re-raised exception."""

    def __init__(self, tb: str) -> None:
        self.tb = tb
        super().__init__(tb)

    def __str__(self) -> str:
        return f"\n\nRemote traceback (from the worker):\n{self.tb}"


class RemoteError(SieveError):
    """A user exception from a worker whose type could not be rebuilt in the kernel.

    Attributes:
        type_name: qualified name of the original exception type.
        message: ``str()`` of the original exception.
        traceback: the formatted remote traceback.
    """

    def __init__(self, type_name: str, message: str, traceback: str = "") -> None:
        self.type_name = type_name
        self.message = message
        self.traceback = traceback
        super().__init__(f"{type_name}: {message}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.type_name, self.message, self.traceback))


class JobCancelledError(SieveError, concurrent.futures.CancelledError):
    """The job was cancelled before it produced a result."""


class ResultReleasedError(SieveError, LookupError):
    """A job from the job history finished, but its result (rebuilt on a worker's shared
    memory, or held in Ray's object store) was released once nothing but the history held
    it."""


class SieveWarning(UserWarning):
    """Something asked for cannot be honoured here and is being ignored (said once)."""


class GpuFallbackWarning(SieveWarning):
    """A GPU function runs on the CPU because `sieve.configure(gpu_fallback="cpu")`."""
