"""`spec_from_callable`: what ``@sieve.function`` and ``@sieve.Model`` know at decoration time."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from typing import Any

from sieve_jupyter._errors import SpecError
from sieve_jupyter.spec._cuda import DEFAULT_CUDA_VERSION
from sieve_jupyter.spec._gpu import resolve_gpu
from sieve_jupyter.spec._model import KINDS, Environment, FunctionSpec, coerce_envs, coerce_metadata
from sieve_jupyter.spec._schema import inputs_schema, output_schema
from sieve_jupyter.spec._signature import format_signature
from sieve_jupyter.spec._validate import check_bool, check_function_name, current_python_version

__all__ = ["OPTIONS", "spec_from_callable"]

#: The decorator keywords besides ``name``, as in Sieve's SDK. ``machine_type`` is its older
#: SDK's way to pick the GPU: it only decides ``spec.gpu`` (see `resolve_gpu`).
OPTIONS = (
    "gpu",
    "machine_type",
    "python_version",
    "python_packages",
    "system_packages",
    "cuda_version",
    "run_commands",
    "environment_variables",
    "metadata",
    "restart_on_error",
)


def _check_options(options: dict[str, Any]) -> None:
    for key in options:
        if key not in OPTIONS:
            close = difflib.get_close_matches(key, OPTIONS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise SpecError(
                key, "is not a known option.", f"{hint}Known options: name, {', '.join(OPTIONS)}."
            )


def _model_parts(cls: type) -> tuple[Callable[..., Any], str]:
    """The class's ``__predict__`` and its docstring(s); checks ``__setup__``."""
    predict = inspect.getattr_static(cls, "__predict__", None)
    if predict is None:
        raise SpecError(
            "__predict__",
            f"model class {cls.__name__} has no __predict__ method.",
            "define `def __predict__(self, ...)`: it runs on every call.",
        )
    if not inspect.isfunction(predict):
        raise SpecError(
            "__predict__",
            f"{cls.__name__}.__predict__ must be a plain method, got {type(predict).__name__}.",
            "define it as `def __predict__(self, ...)` (not a staticmethod or attribute).",
        )
    setup = inspect.getattr_static(cls, "__setup__", None)
    if setup is not None:
        if not inspect.isfunction(setup):
            raise SpecError(
                "__setup__",
                f"{cls.__name__}.__setup__ must be a plain method, got {type(setup).__name__}.",
                "define it as `def __setup__(self):`.",
            )
        extra = list(inspect.signature(setup).parameters)[1:]
        if not inspect.signature(setup).parameters or extra:
            raise SpecError(
                "__setup__",
                f"{cls.__name__}.__setup__ takes arguments "
                f"({', '.join(extra) or 'not even self'}); it is called once per worker with none.",
                "define it as `def __setup__(self):` and read settings from sieve.Env.",
            )
    docs = [d for d in (inspect.getdoc(cls), inspect.getdoc(predict)) if d]
    return predict, "\n\n".join(docs)


def spec_from_callable(obj: Any, *, kind: str, name: Any, **options: Any) -> FunctionSpec:
    """Build and validate the `FunctionSpec` for a decorated function or model class.

    Args:
        obj: the function, or for a model the class (with ``__predict__`` and optionally
            ``__setup__``). A class is always a model, whatever `kind` says: Sieve's SDK also
            accepts ``@sieve.function`` on a class with ``__setup__``/``__predict__``.
        kind: ``"function"`` or ``"model"``.
        name: the function's name (no ``/``, no spaces).
        **options: the decorator keywords, see `OPTIONS`. ``gpu`` defaults to none,
            ``python_version`` to the running interpreter's, ``cuda_version`` to
            `DEFAULT_CUDA_VERSION` when a GPU is requested, ``restart_on_error`` to True. An
            option given as None takes its default (magics pass unset options that way).
            ``machine_type`` (Sieve's older SDK, e.g. ``"a100-20gb"``) is not recorded: it
            decides ``spec.gpu`` with ``gpu``. ``gpu=True`` or unset takes the machine type's
            GPU; a ``gpu`` naming the same kind keeps its split; a different kind, or
            ``gpu=False`` with a GPU machine type, is refused (see `resolve_gpu`).

    Raises:
        SpecError: any invalid argument, naming the field and the fix.
    """
    _check_options(options)
    if kind not in KINDS:
        raise SpecError(
            "kind",
            f"must be 'function' or 'model', got {kind!r}.",
            "use sieve.function or sieve.Model.",
        )
    name = check_function_name(name)

    if inspect.isclass(obj):
        kind = "model"
        target, doc = _model_parts(obj)
        skip_self = True
    elif kind == "model":
        raise SpecError(
            "model",
            f"sieve.Model decorates a class, got {type(obj).__name__} {obj!r}.",
            "decorate a class with __setup__ and __predict__, or a function with sieve.function.",
        )
    elif not callable(obj):
        raise SpecError("function", f"{obj!r} is not callable.", "decorate a function (def ...).")
    else:
        target, doc, skip_self = obj, inspect.getdoc(obj) or "", False

    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError) as exc:
        raise SpecError(
            "function",
            f"cannot read the signature of {obj!r} ({exc}).",
            "decorate a Python function.",
        ) from None
    if skip_self:
        params = list(signature.parameters.values())[1:]
        signature = signature.replace(parameters=params)
    is_generator = inspect.isgeneratorfunction(target) or inspect.isasyncgenfunction(target)

    gpu = resolve_gpu(options.get("gpu"), options.get("machine_type"))
    cuda_version = options.get("cuda_version")
    if cuda_version is None and gpu is not None:
        cuda_version = DEFAULT_CUDA_VERSION
    python_version = options.get("python_version")
    environment = Environment(
        python_version=current_python_version() if python_version is None else python_version,
        python_packages=_list_option(options, "python_packages"),
        system_packages=_list_option(options, "system_packages"),
        cuda_version=cuda_version,
        run_commands=_list_option(options, "run_commands"),
    )
    return FunctionSpec(
        name=name,
        kind=kind,
        environment=environment,
        gpu=gpu,
        env=coerce_envs(options.get("environment_variables")),
        metadata=coerce_metadata(options.get("metadata")),
        restart_on_error=check_bool(
            True if options.get("restart_on_error") is None else options["restart_on_error"],
            "restart_on_error",
        ),
        inputs=inputs_schema(target, skip_self=skip_self, doc=doc),
        output=output_schema(target, is_generator=is_generator, doc=doc),
        is_generator=is_generator,
        signature=format_signature(signature),
        doc=doc,
    )


def _list_option(options: dict[str, Any], key: str) -> Any:
    value = options.get(key)
    return () if value is None else value
