"""`@sieve.function`, `@sieve.Model` and `sieve.function.get`: registering code and finding it.

The decorators validate their options into a `FunctionSpec`, register the object with the
manager and return a typed handle (`_handles.py`). Re-registering a model whose `__setup__` and
environment did not change swaps the new code into its warm workers (`Manager.register`).

Type checkers: a decorated function's handle is typed by its signature. A decorated *class* is
typed by its `__predict__` where the checker applies class decorators (pyright does; mypy keeps
the class's own type, so write ``Adder = sieve.Model(name="adder")(AdderClass)`` for mypy).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, ParamSpec, Protocol, TypeVar, cast, overload

from sieve_jupyter._errors import FunctionNotFoundError, SieveError
from sieve_jupyter._hooks import name_resolvers
from sieve_jupyter.manager import Registration, get_manager
from sieve_jupyter.runtime import RemoteFunction, current_context
from sieve_jupyter.sdk._handles import FunctionHandle, ModelHandle
from sieve_jupyter.sdk._payload import code_fingerprint, dumps, source_lines
from sieve_jupyter.spec import FunctionSpec, spec_from_callable

__all__ = ["Model", "function", "get", "register"]

P = ParamSpec("P")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)


def _setup_key(obj: Any, spec: FunctionSpec) -> str:
    """What must be unchanged for re-registration to keep the warm instance."""
    parts = [
        spec.environment.content_hash(),
        repr(spec.gpu),
        repr(spec.env),
    ]
    if inspect.isclass(obj):
        parts.append(
            code_fingerprint(
                getattr(obj, "__setup__", None),
                getattr(obj, "__init__", None) if "__init__" in vars(obj) else None,
            )
        )
    return "|".join(parts)


def register(
    obj: Any,
    *,
    kind: str,
    name: str | None,
    backend: str | None = None,
    workers: int | None = None,
    force_setup: bool = False,
    spec: FunctionSpec | None = None,
    **options: Any,
) -> tuple[FunctionHandle[..., Any], Registration]:
    """Validate, register with the manager and wrap in a handle. Returns the handle and what
    the registration did (`Registration`: new, replaced, or swapped into warm workers).

    `spec`, when given, is used as it is instead of one built from `options` (a model.yaml
    model builds its own: base image, mounts).

    Raises:
        SpecError: a bad argument, naming the field and the fix.
        SwapError: new code for warm workers failed to load there; nothing changed.
    """
    if spec is None:
        spec = spec_from_callable(
            obj, kind=kind, name=name or getattr(obj, "__name__", None), **options
        )
    if backend is not None:
        from sieve_jupyter._config import Config

        Config(backend=backend).validate()
    if workers is not None:
        from sieve_jupyter._config import Config

        Config(workers=workers).validate()
    registration = get_manager().register(
        spec,
        obj,
        functools.partial(_pickled, obj, spec.name),
        backend=backend,
        workers=workers,
        setup_key=_setup_key(obj, spec),
        force_setup=force_setup,
        sources=source_lines(obj),
    )
    handle_type = ModelHandle if spec.kind == "model" else FunctionHandle
    return handle_type(obj, spec, registration.record), registration


def _pickled(obj: Any, name: str) -> bytes:
    """`obj` as its workers load it (the manager calls this when they first need it)."""
    try:
        return dumps(obj)
    except Exception as exc:
        raise SieveError(
            f"{name}: its code cannot be sent to a worker ({type(exc).__name__}: {exc}). Fix: "
            "create what it uses that cannot be copied (a lock, a connection, an open file) "
            "inside the function or in __setup__, not at the notebook's top level."
        ) from exc


class _Predictor(Protocol[P, R_co]):
    """A model class, seen by its `__predict__` (which gives the handle its type)."""

    def __predict__(self, *args: P.args, **kwargs: P.kwargs) -> R_co: ...


class _Decorate(Protocol):
    """What ``@sieve.function(name=...)`` and ``@sieve.Model(name=...)`` return."""

    @overload
    def __call__(self, obj: type[_Predictor[P, R]], /) -> ModelHandle[P, R]: ...

    @overload
    def __call__(self, obj: Callable[P, R], /) -> FunctionHandle[P, R]: ...


def _decorator(kind: str, name: str | None, settings: dict[str, Any]) -> _Decorate:
    def decorate(obj: Any) -> Any:
        handle, _ = register(obj, kind=kind, name=name, **settings)
        return handle

    return cast(_Decorate, decorate)


class _FunctionDecorator:
    """``@sieve.function(name=..., ...)`` and ``sieve.function.get("user/name")``."""

    @overload
    def __call__(self, obj: type[_Predictor[P, R]], /) -> ModelHandle[P, R]: ...

    @overload
    def __call__(self, obj: Callable[P, R], /) -> FunctionHandle[P, R]: ...

    @overload
    def __call__(
        self, obj: None = None, /, *, name: str | None = None, **settings: Any
    ) -> _Decorate: ...

    def __call__(self, obj: Any = None, /, *, name: str | None = None, **settings: Any) -> Any:
        """Register a function (or a class with `__setup__`/`__predict__`) as a Sieve function.

        Keyword-only, as in Sieve: ``name``, ``gpu``, ``machine_type``, ``python_version``,
        ``python_packages``, ``system_packages``, ``cuda_version``, ``run_commands``,
        ``environment_variables``, ``metadata``, ``restart_on_error``; plus ``backend`` and
        ``workers`` for this kernel.

        ``machine_type`` is Sieve's older SDK's way to pick the GPU (``gpu=True,
        machine_type="a100-20gb"``): it decides the GPU and nothing else. With ``gpu=True`` or
        no ``gpu`` it asks for the machine type's GPU; a ``gpu`` of the same kind keeps its
        split; a ``gpu`` of another kind, or ``gpu=False`` with a GPU machine type, is a
        SpecError. ``gpu=sieve.gpu.A100()`` is the current way.

        Raises:
            SpecError: a bad argument, naming the field and the fix (at decoration time).
        """
        decorate = _decorator("function", name, settings)
        return decorate if obj is None else decorate(obj)

    @staticmethod
    def get(name: str, **options: Any) -> FunctionHandle[..., Any]:
        """The function registered as ``"user/name"`` (or ``"name"``) in this kernel, else the
        deployment of that name (``"user/name:version"`` for one version; see
        `sieve.deployments()`), or the function served at
        ``"http://host:port[/functions/name]"`` (``token=`` for a server that wants one; see
        `sdk/_remote.py`).

        Inside a worker this returns a proxy whose `.run/.push` go through the manager.

        Raises:
            FunctionNotFoundError: unknown name; the message lists the functions of this
                process and the deployments.
        """
        return get(name, **options)

    def __repr__(self) -> str:
        return "<sieve.function decorator>"


def get(name: str, **options: Any) -> FunctionHandle[..., Any]:
    """The handle of a registered function (or, inside a worker, a proxy through the kernel;
    for an http(s) URL, a handle on the function a server serves there; for a name that no
    function of this process has, the deployment of that name)."""
    if name.startswith(("http://", "https://")):
        from sieve_jupyter.sdk._remote import http_function

        # (duck-typed: run / push / map like a handle, with the same futures and errors)
        return cast("FunctionHandle[..., Any]", http_function(name, **options))
    if current_context() is not None:
        # (duck-typed: the proxy has run / push like a handle). The whole name travels: the
        # manager looks for a function of its own first, then for a deployment.
        return cast("FunctionHandle[..., Any]", RemoteFunction(name))
    manager = get_manager()
    try:
        record = manager.record(name)
    except FunctionNotFoundError:
        for resolver in name_resolvers:
            found = resolver.resolve(name)
            if found is not None:
                return cast("FunctionHandle[..., Any]", found)
        if not name_resolvers:
            raise
        raise FunctionNotFoundError(not_found_message(name)) from None
    handle_type = ModelHandle if record.spec.kind == "model" else FunctionHandle
    return handle_type(record.obj, record.spec, record)


def not_found_message(name: str) -> str:
    """Why `name` is found nowhere, listing this process's functions and the deployments."""
    manager = get_manager()
    user = manager.config.user
    local = ", ".join(f"{user}/{r.name}" for r in manager.records()) or "none"
    deployed: list[str] = []
    for resolver in name_resolvers:
        deployed += resolver.known()
    return (
        f"function {name!r} is neither registered in this process (functions: {local}) nor "
        f"deployed (deployments: {', '.join(deployed) or 'none'}). Fix: run the cell that "
        "defines it, deploy it (Model.deploy() or %sieve deploy NAME), or check the name and "
        "user (sieve.configure(user=...))."
    )


function = _FunctionDecorator()


@overload
def Model(obj: type[_Predictor[P, R]], /) -> ModelHandle[P, R]: ...  # noqa: N802


@overload
def Model(  # noqa: N802
    obj: None = None, /, *, name: str | None = None, **settings: Any
) -> _Decorate: ...


def Model(obj: Any = None, /, *, name: str | None = None, **settings: Any) -> Any:  # noqa: N802
    """``@sieve.Model(name=..., ...)``: register a class with `__setup__` and `__predict__`.

    Takes the same keywords as `sieve.function`. `__setup__` runs once per worker; each
    `.run()`/`.push()` calls `__predict__` on the warm instance.

    Raises:
        SpecError: a bad argument, a class without `__predict__`, a `__setup__` with arguments.
    """
    decorate = _decorator("model", name, settings)
    return decorate if obj is None else decorate(obj)
