"""`@sieve.function`, `@sieve.Model` and the handles they return.

A handle is what the decorated name becomes: calling it runs the code in-process, exactly as
Sieve's SDK does locally; `.run()` and `.push()` go to the function's warm workers.
"""

from __future__ import annotations

import concurrent.futures
import functools
import inspect
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar, cast

from sieve_jupyter._errors import JobCancelledError
from sieve_jupyter.manager import FunctionRecord, JobFuture, Registration, get_manager
from sieve_jupyter.runtime import RemoteFunction, current_context
from sieve_jupyter.sdk._payload import code_fingerprint, dumps, source_lines
from sieve_jupyter.spec import ArgumentChecker, FunctionSpec, spec_from_callable

__all__ = ["FunctionHandle", "Model", "ModelHandle", "function", "get"]

#: each registration's argument checker, made on its first call (weakly held: a replaced
#: registration takes its checker along)
_checkers: weakref.WeakKeyDictionary[FunctionRecord, ArgumentChecker] = (
    weakref.WeakKeyDictionary()
)

T = TypeVar("T")


class FunctionHandle:
    """A registered Sieve function: ``fn(...)`` runs locally, ``fn.run/push/map`` on workers."""

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

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the function in this process, as a plain call (no worker involved)."""
        return self.__wrapped__(*args, **kwargs)

    def push(self, *args: Any, **kwargs: Any) -> JobFuture:
        """Queue a job on the warm workers and return its future at once.

        Raises:
            TypeError: the arguments do not fit the signature (nothing is queued).
            SieveError: the function cannot start (missing Env, GPU, dependency ...).
        """
        args, kwargs = self._checked(args, kwargs)
        return get_manager().submit(self._record, args, kwargs)

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """Run a job on the warm workers and wait for its result.

        For a generator function, returns an iterator that yields outputs as they arrive.
        Interrupting the wait (the notebook's stop button) cancels the job.
        """
        if self.spec.is_generator:
            return _cancel_on_interrupt_iter(self.push(*args, **kwargs))
        args, kwargs = self._checked(args, kwargs)
        return wait_result(get_manager().run(self._record, args, kwargs))

    def map(
        self, *iterables: Iterable[Any], order_outputs: bool = True,
        return_exceptions: bool = False,
    ) -> Iterator[Any]:
        """Run the function over the inputs in parallel; yields results (input order by default).

        Args:
            *iterables: one iterable per positional parameter, zipped like the builtin `map`.
            order_outputs: yield in input order (True) or as jobs finish (False).
            return_exceptions: yield a job's exception instead of raising it.
        """
        futures = [self.push(*args) for args in zip(*iterables, strict=False)]

        def results() -> Iterator[Any]:
            try:
                source = futures if order_outputs else concurrent.futures.as_completed(futures)
                for future in source:
                    try:
                        yield wait_result(cast(JobFuture, future))
                    except Exception as exc:
                        if not return_exceptions:
                            raise
                        yield exc
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
        checker = _checkers.get(self._record)
        if checker is None:
            checker = _checkers[self._record] = ArgumentChecker(
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

    @property
    def workers(self) -> list[dict[str, Any]]:
        return list(self._record.describe()["workers"])

    # -- display and pickling ----------------------------------------------------------------

    def __reduce__(self) -> tuple[Any, ...]:
        # Inside another function's worker, a handle becomes a proxy that routes calls
        # through the manager (chaining).
        return (RemoteFunction, (self.name,))

    def __repr__(self) -> str:
        from sieve_jupyter.sdk._display import handle_text

        return handle_text(self)

    def _repr_html_(self) -> str:
        from sieve_jupyter.sdk._display import handle_html

        return handle_html(self)


class ModelHandle(FunctionHandle):
    """A registered Sieve model: ``Model()`` builds a local instance (its `__setup__` runs in
    this process, as in Sieve); ``Model.run/push`` go to the warm workers."""

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


def wait_result(future: JobFuture) -> Any:
    """`future.result()`, except that an interrupt cancels the job and `CancelledError`
    becomes `JobCancelledError` (with the job id)."""
    try:
        return future.result()
    except concurrent.futures.CancelledError:
        raise JobCancelledError(f"job {future.job_id} was cancelled") from None
    except KeyboardInterrupt:
        future.cancel()
        raise


def _cancel_on_interrupt_iter(future: JobFuture) -> Iterator[Any]:
    try:
        yield from future.stream()
    except KeyboardInterrupt:
        future.cancel()
        raise


def _setup_key(obj: Any, spec: FunctionSpec) -> str:
    """What must be unchanged for re-registration to keep the warm instance."""
    parts = [
        spec.environment.content_hash(),
        repr(spec.gpu),
        repr(spec.env),
    ]
    if inspect.isclass(obj):
        parts.append(code_fingerprint(
            getattr(obj, "__setup__", None), getattr(obj, "__init__", None)
            if "__init__" in vars(obj) else None,
        ))
    return "|".join(parts)


def register(
    obj: Any,
    *,
    kind: str,
    name: str | None,
    backend: str | None = None,
    workers: int | None = None,
    force_setup: bool = False,
    **options: Any,
) -> tuple[FunctionHandle, Registration]:
    """Validate, register with the manager and wrap in a handle. Returns the handle and what
    the registration did (`Registration`: new, replaced, or swapped into warm workers).

    Raises:
        SpecError: a bad argument, naming the field and the fix.
        SwapError: new code for warm workers failed to load there; nothing changed.
    """
    spec = spec_from_callable(obj, kind=kind, name=name or getattr(obj, "__name__", None),
                              **options)
    if backend is not None:
        from sieve_jupyter._config import Config

        Config(backend=backend).validate()
    if workers is not None:
        from sieve_jupyter._config import Config

        Config(workers=workers).validate()
    registration = get_manager().register(
        spec,
        obj,
        dumps(obj),
        backend=backend,
        workers=workers,
        setup_key=_setup_key(obj, spec),
        force_setup=force_setup,
        sources=source_lines(obj),
    )
    handle_type = ModelHandle if spec.kind == "model" else FunctionHandle
    return handle_type(obj, spec, registration.record), registration


def _decorator(kind: str, name: str | None, settings: dict[str, Any]) -> Callable[[Any], Any]:
    def decorate(obj: Any) -> FunctionHandle:
        handle, _ = register(obj, kind=kind, name=name, **settings)
        return handle

    return decorate


class _FunctionDecorator:
    """``@sieve.function(name=..., ...)`` and ``sieve.function.get("user/name")``."""

    def __call__(self, obj: Any = None, /, *, name: str | None = None,
                 **settings: Any) -> Any:
        """Register a function (or a class with `__setup__`/`__predict__`) as a Sieve function.

        Keyword-only, as in Sieve: ``name``, ``gpu``, ``python_version``, ``python_packages``,
        ``system_packages``, ``cuda_version``, ``run_commands``, ``environment_variables``,
        ``metadata``, ``restart_on_error``; plus ``backend`` and ``workers`` for this kernel.

        Raises:
            SpecError: a bad argument, naming the field and the fix (at decoration time).
        """
        decorate = _decorator("function", name, settings)
        return decorate if obj is None else decorate(obj)

    @staticmethod
    def get(name: str) -> Any:
        """The function registered as ``"user/name"`` (or ``"name"``) in this kernel.

        Inside a worker this returns a proxy whose `.run/.push` go through the manager.

        Raises:
            FunctionNotFoundError: unknown name; the message lists the known ones.
        """
        return get(name)

    def __repr__(self) -> str:
        return "<sieve.function decorator>"


def get(name: str) -> Any:
    if current_context() is not None:
        return RemoteFunction(name.rpartition("/")[2])
    record = get_manager().record(name)
    handle_type = ModelHandle if record.spec.kind == "model" else FunctionHandle
    return handle_type(record.obj, record.spec, record)


function = _FunctionDecorator()


def Model(obj: Any = None, /, *, name: str | None = None, **settings: Any) -> Any:  # noqa: N802
    """``@sieve.Model(name=..., ...)``: register a class with `__setup__` and `__predict__`.

    Takes the same keywords as `sieve.function`. `__setup__` runs once per worker; each
    `.run()`/`.push()` calls `__predict__` on the warm instance.

    Raises:
        SpecError: a bad argument, a class without `__predict__`, a `__setup__` with arguments.
    """
    decorate = _decorator("model", name, settings)
    return decorate if obj is None else decorate(obj)
