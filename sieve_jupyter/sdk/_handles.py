"""The handles `@sieve.function` and `@sieve.Model` return.

A handle is what the decorated name becomes: calling it runs the code in-process, exactly as
Sieve's SDK does locally; `.run()` and `.push()` go to the function's warm workers. Handles are
generic over the wrapped callable's parameters and return type, so an editor or type checker
knows that `multiply.run(2, 3)` is an `int` and `multiply.push(...)` a `JobFuture[int]`.
"""

from __future__ import annotations

import concurrent.futures
import functools
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, ParamSpec, TypeVar, cast

from sieve_jupyter._errors import JobCancelledError, SieveError
from sieve_jupyter._hooks import deploy_hooks
from sieve_jupyter.manager import FunctionRecord, JobFuture, get_manager
from sieve_jupyter.runtime import RemoteFunction
from sieve_jupyter.sdk._payload import travels_by_value
from sieve_jupyter.sdk._script_output import manager as calling_manager
from sieve_jupyter.spec import ArgumentChecker, FunctionSpec

__all__ = ["FunctionHandle", "ModelHandle", "wait_result"]

P = ParamSpec("P")
R = TypeVar("R")


class FunctionHandle(Generic[P, R]):
    """A registered Sieve function: ``fn(...)`` runs locally, ``fn.run/push/map`` on workers."""

    #: the decorated function, or the model's class
    __wrapped__: Any

    def __init__(self, obj: Any, spec: FunctionSpec, record: FunctionRecord) -> None:
        self.__wrapped__ = obj
        self.spec = spec
        self._record = record
        functools.update_wrapper(self, obj, updated=())

    # -- identity ----------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def kind(self) -> str:
        return self.spec.kind

    # -- calling -----------------------------------------------------------------------------

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the function in this process, as a plain call (no worker involved)."""
        return cast(R, self.__wrapped__(*args, **kwargs))

    def push(self, *args: P.args, **kwargs: P.kwargs) -> JobFuture[R]:
        """Queue a job on the warm workers and return its future at once.

        Raises:
            TypeError: the arguments do not fit the signature (nothing is queued).
            SieveError: the function cannot start (missing Env, GPU, dependency ...).
        """
        checked_args, checked_kwargs = self._checked(args, kwargs)
        future: JobFuture[R] = calling_manager().submit(self._record, checked_args, checked_kwargs)
        return future

    def run(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run a job on the warm workers and wait for its result.

        For a generator function, returns an iterator that yields outputs as they arrive.
        Interrupting the wait (the notebook's stop button) cancels the job.
        """
        if self.spec.is_generator:
            return cast(R, _cancel_on_interrupt_iter(self.push(*args, **kwargs)))
        checked_args, checked_kwargs = self._checked(args, kwargs)
        future: JobFuture[R] = calling_manager().run(self._record, checked_args, checked_kwargs)
        return wait_result(future)

    def map(
        self,
        *iterables: Iterable[Any],
        order_outputs: bool = True,
        return_exceptions: bool = False,
    ) -> Iterator[R]:
        """Run the function over the inputs in parallel; yields results (input order by default).

        Args:
            *iterables: one iterable per positional parameter, zipped like the builtin `map`.
            order_outputs: yield in input order (True) or as jobs finish (False).
            return_exceptions: yield a job's exception instead of raising it.
        """
        push = cast(Callable[..., "JobFuture[R]"], self.push)  # (zipped: the checker checks)
        futures = [push(*args) for args in zip(*iterables, strict=False)]

        def results() -> Iterator[R]:
            try:
                source = futures if order_outputs else concurrent.futures.as_completed(futures)
                for future in source:
                    try:
                        yield wait_result(cast("JobFuture[R]", future))
                    except Exception as exc:
                        if not return_exceptions:
                            raise
                        yield cast(R, exc)
            finally:
                for future in futures:
                    if not future.done():
                        future.cancel()

        return results()

    def _checked(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The call's arguments, checked against the hints (and coerced: a path for a
        `sieve.File`, an int for a float) before anything is queued."""
        checker = self._record.argument_checker
        if checker is None:
            checker = self._record.argument_checker = ArgumentChecker(
                self.name,
                self.__wrapped__.__predict__ if self.spec.kind == "model" else self.__wrapped__,
                drop_first=self.spec.kind == "model",
            )
        return checker.check(args, kwargs)

    # -- workers -----------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop this function's workers (its queued and running jobs are cancelled)."""
        get_manager().stop(self.name)

    def restart(self) -> None:
        """Replace the workers with fresh ones; `__setup__` runs again."""
        get_manager().restart(self.name)

    @property
    def state(self) -> str:
        return str(self._record.describe()["state"])

    # -- deployment --------------------------------------------------------------------------

    def deploy(self, **options: Any) -> Any:
        """Deploy this function so it serves after the kernel is gone, as ``user/name``:
        ``sieve.function.get("user/name")`` finds it from any kernel, script or worker.

        Deploying changed code (or settings) starts a new version and switches the name to it
        once its setup is done; calls in flight finish on the old one. Unchanged, it does
        nothing and says so. Takes the options of `sieve.deploy` (``backend``, ``workers``,
        ``host``, ``port``, ``token``, ``force``, ``timeout``) and returns its `DeployResult`.

        Raises:
            DeployError: the new version's setup failed; the old version keeps serving.
        """
        if not deploy_hooks:
            raise SieveError("deploying needs `import sieve_jupyter` (its deployment layer).")
        return deploy_hooks[0](self, **options)

    @property
    def workers(self) -> list[dict[str, Any]]:
        return list(self._record.describe()["workers"])

    # -- display and pickling ----------------------------------------------------------------

    def __reduce__(self) -> tuple[Any, ...]:
        # Inside another function's worker, a handle becomes a proxy that routes `run` and
        # `push` through the manager (chaining), and runs a plain call in the worker, as the
        # handle does here: with the code, when it travels by value with the code that names
        # the handle (see `travels_by_value`).
        wrapped = self.__wrapped__
        local = wrapped if travels_by_value(wrapped) else None
        return (RemoteFunction, (self.name, local, self.spec.kind == "model"))

    def __repr__(self) -> str:
        from sieve_jupyter.sdk._display import handle_text

        return handle_text(self)

    def _repr_html_(self) -> str:
        from sieve_jupyter.sdk._display import handle_html

        return handle_html(self)


class ModelHandle(FunctionHandle[P, R]):
    """A registered Sieve model: ``Model()`` builds a local instance (its `__setup__` runs in
    this process, as in Sieve); ``Model.run/push`` call `__predict__` on the warm workers, so
    the handle is typed by `__predict__`'s parameters and return type."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        instance = self.__wrapped__(*args, **kwargs)
        setup = getattr(instance, "__setup__", None)
        if setup is not None:
            setup()
        return instance

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("spec", "_record"):
            raise AttributeError(name)
        return getattr(self.__wrapped__, name)


def wait_result(future: JobFuture[R]) -> R:
    """`future.result()`, except that an interrupt cancels the job and `CancelledError`
    becomes `JobCancelledError` (with the job id)."""
    try:
        return future.result()
    except concurrent.futures.CancelledError:
        raise JobCancelledError(f"job {future.job_id} was cancelled") from None
    except KeyboardInterrupt:
        future.cancel()
        raise


def _cancel_on_interrupt_iter(future: JobFuture[Any]) -> Iterator[Any]:
    try:
        yield from future.stream()
    except KeyboardInterrupt:
        future.cancel()
        raise
